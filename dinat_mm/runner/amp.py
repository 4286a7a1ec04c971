"""Mixed precision on CPU: bfloat16 autocast, which needs no loss scaling (it has float32's range).
mmengine's AmpOptimWrapper asserts a GPU."""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from ..errors import UserError


class CPUBF16OptimWrapper(OptimWrapper):
    """mmengine's OptimWrapper with the forward under CPU bfloat16 autocast (segmentors)."""

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield


def bf16_features(extract_feat):
    """Wrap a detector's ``extract_feat`` (backbone + neck, nearly all of its FLOPs) to run under
    CPU bfloat16 autocast and hand float32 features to the heads: mmcv's CPU nms and RoIAlign
    have no bfloat16 kernels."""
    if getattr(extract_feat, 'bf16_features', False):
        return extract_feat

    @functools.wraps(extract_feat)
    def wrapped(*args, **kwargs):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            feats = extract_feat(*args, **kwargs)
        return tuple(f.float() for f in feats)

    wrapped.bf16_features = True
    return wrapped


class BF16FeaturesHook(Hook):
    """--amp for mmdet detectors on CPU: :func:`bf16_features` on the runner's model."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'extract_feat'):
            raise UserError(f'BF16FeaturesHook needs a detector with extract_feat, got {type(model).__name__}')
        model.extract_feat = bf16_features(model.extract_feat)
        runner.logger.info('bfloat16 autocast on CPU for the backbone and neck; heads in float32')


def cpu_bf16_support() -> Optional[str]:
    """None if this CPU computes bfloat16 natively (x86 AVX512_BF16 or AMX, ARM's BF16 extension),
    else what it has instead: there torch emulates bfloat16 arithmetic, many times slower."""
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    try:
        with open('/proc/cpuinfo') as f:
            flags = {w for line in f if line.lower().startswith(('flags', 'features')) for w in line.split()}
    except OSError:
        flags = set()
    if 'bf16' in flags:  # aarch64 with FEAT_BF16
        return None
    return f'CPU capability {torch.backends.cpu.get_cpu_capability()}, without AVX512_BF16, AMX or BF16'
