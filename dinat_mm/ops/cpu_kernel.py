"""The compiled CPU kernel (csrc/na2d_cpu.cpp): built on first use with torch.utils.cpp_extension
for this machine's CPU, cached, and used only where it serves; otherwise the reason is returned
and na2d runs the pure-PyTorch path.

The build is cached under ``$DINAT_MM_BUILD_DIR`` (default ``~/.cache/dinat_mm``) in a folder named
after a hash of the source, the torch version, the CPU flags and the compiler flags, so a changed
source, torch, machine or flag builds afresh. ``DINAT_MM_CPU_KERNEL=0`` turns the kernel off.
"""
from __future__ import annotations

import hashlib
import os
import platform
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

import torch

SOURCE = Path(__file__).with_name('csrc') / 'na2d_cpu.cpp'
# -ffast-math at compile time only (vectorised exp through glibc's libmvec, reordered sums);
# not at link time, so no flush-to-zero start-up code reaches the process.
CFLAGS = ('-O3', '-march=native', '-mprefer-vector-width=512', '-ffast-math', '-fopenmp')
LDFLAGS = ('-fopenmp', '-lmvec')


def _cpu_flags() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            return next((line for line in f if line.startswith('flags')), platform.processor())
    except OSError:
        return platform.processor()


def build_dir() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + _cpu_flags().encode()
                            + ' '.join(CFLAGS + LDFLAGS).encode()).hexdigest()[:12]
    root = Path(os.environ.get('DINAT_MM_BUILD_DIR', Path.home() / '.cache' / 'dinat_mm'))
    return root / f'na2d_cpu_{digest}'


@lru_cache(maxsize=1)
def _load():
    """(module, None) or (None, reason)."""
    if os.environ.get('DINAT_MM_CPU_KERNEL', '1') == '0':
        return None, 'turned off by DINAT_MM_CPU_KERNEL=0'
    try:
        from torch.utils.cpp_extension import load
        directory = build_dir()
        directory.mkdir(parents=True, exist_ok=True)
        # fresh lists: torch's load appends to the ones it is given
        module = load(name=directory.name, sources=[str(SOURCE)], extra_cflags=list(CFLAGS),
                      extra_ldflags=list(LDFLAGS), build_directory=str(directory), verbose=False)
        return module, None
    except Exception as exc:  # no compiler, no headers, ...: the torch path still serves
        reason = f'the CPU kernel could not be built ({type(exc).__name__}: {str(exc)[-500:]})'
        warnings.warn(f'dinat_mm: {reason}; na2d uses its pure-PyTorch path', RuntimeWarning)
        return None, reason


def build() -> Optional[str]:
    """Build (or find in the cache) the kernel now; None on success, else the reason."""
    return _load()[1]


def why_not(query: torch.Tensor, attn_drop: float) -> Optional[str]:
    """None if the CPU kernel serves this call, else the reason it does not."""
    if query.device.type != 'cpu':
        return f'the kernel is for CPU tensors, got {query.device.type}'
    if attn_drop > 0:
        return 'the kernel does not apply attention dropout'
    return _load()[1]


def na2d(query, key, value, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
         rpb: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    out_dtype = query.dtype
    compute = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    q, k, v = (t.to(compute) if t.stride(-1) == 1 else t.to(compute).contiguous() for t in (query, key, value))
    table = rpb.to(compute) if rpb is not None else None
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, table))
    out = _NA2DKernel.apply(q, k, v, table, kernel_size, dilation, scale, keep)
    return out.to(out_dtype)


class _NA2DKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, rpb, kernel_size, dilation, scale, keep):
        module = _load()[0]
        out, attn = module.forward(query, key, value, rpb, kernel_size[0], kernel_size[1],
                                   dilation[0], dilation[1], scale, keep)
        if keep:
            ctx.save_for_backward(query, key, value, attn)
        ctx.geometry = (rpb is not None, kernel_size, dilation, scale)
        return out.permute(0, 3, 1, 2, 4)  # [B, heads, H, W, D] view of [B, H, W, heads, D]

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, attn = ctx.saved_tensors
        has_rpb, kernel_size, dilation, scale = ctx.geometry
        grad_out = grad_out.permute(0, 2, 3, 1, 4).contiguous()
        dq, dk, dv, drpb = _load()[0].backward(grad_out, query, key, value, attn, has_rpb, kernel_size[0],
                                               kernel_size[1], dilation[0], dilation[1], scale)
        dq, dk, dv = (g.permute(0, 3, 1, 2, 4) for g in (dq, dk, dv))
        return dq, dk, dv, (drpb if has_rpb else None), None, None, None, None
