"""Training checkpoints that survive the process being killed at any moment.

mmengine 0.10.7's CheckpointHook writes ``iter_N.pth`` in place, removes the outdated checkpoint
*before* writing the new one and rewrites ``last_checkpoint`` in place, so a kill during a save can
leave a truncated newest file, and with ``max_keep_ckpts=1`` no readable checkpoint at all.
:class:`AtomicCheckpointHook` writes each checkpoint to a hidden partial file in the same folder,
fsyncs and renames it, then replaces ``last_checkpoint`` the same way, and only then removes the
outdated ones. :func:`resume_point` is what ``tools/train.py --resume`` resumes from: the newest
checkpoint that loads, naming every newer one it had to pass over.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import re
from typing import Callable, List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

PARTIAL_SUFFIX = '.partial'
_NUMBERED = re.compile(r'^(?:iter|epoch)_\d+\.pth$')


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(partial: str, final: str) -> None:
    """Make a fully written ``partial`` file durable and put it at ``final`` in one step."""
    with open(partial, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(partial, final)
    _fsync_dir(osp.dirname(osp.abspath(final)))


def write_text_atomically(path: str, text: str) -> None:
    partial = osp.join(osp.dirname(osp.abspath(path)), f'.{osp.basename(path)}{PARTIAL_SUFFIX}')
    with open(partial, 'w') as f:
        f.write(text)
        f.flush()
    commit(partial, path)


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook (same arguments, names and ``max_keep_ckpts``), with every file
    written atomically and outdated checkpoints removed only once the new one is in place.
    Non-local backends (``backend_args``) keep mmengine's behaviour."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._local() and is_main_process():
            for leftover in glob.glob(osp.join(glob.escape(self.out_dir), f'.*{PARTIAL_SUFFIX}')):
                os.remove(leftover)  # a save that was killed; its checkpoint was never committed

    def _local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial_name = f'.{filename}{PARTIAL_SUFFIX}'
        runner.save_checkpoint(self.out_dir, partial_name, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        commit(osp.join(self.out_dir, partial_name), self.last_ckpt)
        write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in outdated:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)


def make_checkpoints_atomic(cfg) -> None:
    """Swap the config's mmengine CheckpointHook for :class:`AtomicCheckpointHook` (same arguments)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', CheckpointHook):
        hook['type'] = 'AtomicCheckpointHook'


def _candidates(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """(what last_checkpoint names, or None; the numbered checkpoints there and in work_dir, newest first)."""
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
    work_dir = osp.abspath(work_dir)
    named = osp.abspath(named) if named else None
    folders = {work_dir} | ({osp.dirname(named)} if named else set())
    found = {osp.join(d, name) for d in folders if osp.isdir(d) for name in os.listdir(d) if _NUMBERED.match(name)}
    if named and osp.isfile(named):
        found.add(named)
    return named, sorted(found, key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=True)


def resume_point(work_dir: str, check: Callable[[str], object],
                 warn: Callable[[str], None]) -> Optional[str]:
    """The newest checkpoint in ``work_dir`` that ``check`` (a loader raising on a bad file) reads,
    or None when there is none. Each newer file passed over, and a ``last_checkpoint`` that names a
    missing file, is reported through ``warn`` by name."""
    named, paths = _candidates(work_dir)
    if named and not osp.isfile(named):
        warn(f'{osp.join(work_dir, "last_checkpoint")} names {named}, which does not exist')
    for path in paths:
        try:
            check(path)
        except Exception as err:  # the loader's message names the file and what is wrong with it
            warn(f'{err}; trying an older one')
            continue
        if path != named and named:
            warn(f'resuming from {path}, the newest readable checkpoint (last_checkpoint names {named})')
        return path
    return None
