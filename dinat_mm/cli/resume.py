"""Where ``tools/train.py --resume`` continues: the newest checkpoint in the work dir that loads,
naming every newer one it had to pass over."""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import Callable, List, Optional, Tuple

_NUMBERED = re.compile(r'^(?:iter|epoch)_\d+\.pth$')


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
