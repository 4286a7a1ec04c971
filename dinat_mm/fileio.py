"""Writing files and folders so that a reader, or a run killed at any moment, sees either the old
content or the complete new one, never a part."""
from __future__ import annotations

import os
import os.path as osp
import shutil
from contextlib import contextmanager
from typing import Iterator

PARTIAL_SUFFIX = '.partial'


def partial_path(path: str) -> str:
    """The hidden name beside ``path`` that :func:`written_atomically` writes to first."""
    path = osp.abspath(os.fspath(path))
    return osp.join(osp.dirname(path), f'.{osp.basename(path)}{PARTIAL_SUFFIX}')


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    if osp.isdir(path):
        for folder, _, files in os.walk(path):
            for name in files:
                _fsync(osp.join(folder, name))
            _fsync(folder)
    else:
        _fsync(path)


@contextmanager
def written_atomically(path: str) -> Iterator[str]:
    """Yields the path to write a file or a folder to instead of ``path``. When the block ends
    without an error, what was written is flushed to disk and takes the place of ``path`` (an
    existing file or folder there is replaced); on an error it is removed and ``path`` is left as
    it was."""
    final = osp.abspath(os.fspath(path))
    partial = partial_path(final)
    _remove(partial)  # left by a writer that was killed
    try:
        yield partial
        if not osp.exists(partial):
            raise FileNotFoundError(f'nothing was written to {partial} for {final}')
        _fsync_tree(partial)
        if osp.isdir(partial) and osp.isdir(final):
            # a folder cannot be renamed onto a non-empty one: move the old one aside first
            old = partial_path(final + '.old')
            _remove(old)
            os.replace(final, old)
            os.replace(partial, final)
            _remove(old)
        else:
            os.replace(partial, final)
        _fsync(osp.dirname(final))
    finally:
        _remove(partial)


def _remove(path: str) -> None:
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif osp.lexists(path):
        os.remove(path)


def write_text_atomically(path: str, text: str) -> None:
    with written_atomically(path) as partial, open(partial, 'w') as f:
        f.write(text)
