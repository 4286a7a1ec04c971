"""Training checkpoints that survive the process being killed at any moment.

mmengine 0.10.7's CheckpointHook writes ``iter_N.pth`` in place, removes the outdated checkpoint
*before* writing the new one and rewrites ``last_checkpoint`` in place, so a kill during a save can
leave a truncated newest file, and with ``max_keep_ckpts=1`` no readable checkpoint at all.
:class:`AtomicCheckpointHook` writes each file with :func:`dinat_mm.fileio.written_atomically`,
``last_checkpoint`` after the checkpoint it names, and removes outdated checkpoints only then.
"""
from __future__ import annotations

import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from ..fileio import PARTIAL_SUFFIX, write_text_atomically, written_atomically


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
        self.last_ckpt = osp.join(self.out_dir, self.filename_tmpl.format(step))
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if not is_main_process():  # Runner.save_checkpoint writes on the main process only
            return
        save = dict(file_client_args=self.file_client_args, save_optimizer=self.save_optimizer,
                    save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                    backend_args=self.backend_args, **self.args)
        with written_atomically(self.last_ckpt) as partial:
            runner.save_checkpoint(self.out_dir, osp.basename(partial), **save)
        write_text_atomically(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in outdated:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
