"""The one safe loader: checkpoints are read with ``torch.load(weights_only=True)`` or safetensors,
never with a full unpickle, so a checkpoint cannot run code.

mmengine 0.10.7 writes training checkpoints whose pickles hold numpy scalars and arrays and
``HistoryBuffer`` objects with references to its statistics methods (pickled as
``getattr(HistoryBuffer, 'mean')``). :func:`trusted_checkpoint_types` allowlists exactly those: the
numpy reconstructors, ``HistoryBuffer``, and a ``getattr`` that only returns HistoryBuffer's
statistics methods. Anything else is refused by torch's weights-only unpickler.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from ..errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be (safely) loaded; the message names the file."""


def require_checkpoint(path: str, url_ok: bool = True) -> None:
    """Raise :class:`CheckpointError` naming ``path`` unless it is a file (or, with ``url_ok``, an
    http(s) URL, which mmengine downloads)."""
    path = os.fspath(path)
    if not ((url_ok and path.startswith(('http://', 'https://'))) or os.path.isfile(path)):
        raise CheckpointError(f'checkpoint not found: {path}')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def allowed_globals() -> list:
    """What mmengine's training checkpoints hold beyond tensors: the weights-only allowlist."""
    numpy_core = getattr(np, '_core', None) or np.core
    dtypes = [type(np.dtype(t)) for t in ('float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64',
                                          'uint8', 'uint16', 'uint32', 'uint64', 'bool', 'str', 'object')]
    return [np.ndarray, np.dtype, numpy_core.multiarray._reconstruct, numpy_core.multiarray.scalar,
            *dtypes, HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
            (_history_buffer_getattr, '__builtin__.getattr')]


_active = 0


@contextmanager
def trusted_checkpoint_types() -> Iterator[None]:
    """While active, weights-only ``torch.load`` (mmengine's included) accepts mmengine's own
    training checkpoints; it still refuses every other type. Reentrant: torch's own safe_globals
    context loses the allowlist when an inner one exits."""
    global _active
    if _active:
        yield
        return
    _active += 1
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            yield
    finally:
        _active -= 1


def load_checkpoint_file(path: str, map_location: str = 'cpu') -> Any:
    """Load a checkpoint file (``.safetensors`` or a torch pickle) without running code from it."""
    path = os.fspath(path)
    require_checkpoint(path, url_ok=False)
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f'{path}: not a readable safetensors file (truncated or corrupt?): {err}') from err
    try:
        with trusted_checkpoint_types():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message: generic advice around the one line that names the refused object
        generic = ('Weights only load failed', 'Please file an issue', 'Check the documentation', 'In PyTorch 2.6')
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith(generic)]
        reason = lines[0] if lines else 'an object outside the allowlist'
        raise CheckpointError(
            f'{path}: refused, loading it would need more than plain data ({reason}). A checkpoint '
            'that names other Python objects can run code when unpickled. If you trust the file, '
            'convert it once: python tools/convert_checkpoint.py --trust-source SRC DST') from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f'{path}: truncated or corrupt checkpoint ({type(err).__name__}: {err})') from err
