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
from typing import List, Optional, Tuple

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


def why_not(device_type: str, attn_drop: float) -> Optional[str]:
    """None if the CPU kernel serves a call on ``device_type`` tensors, else the reason it does not."""
    if device_type != 'cpu':
        return f'the kernel is for CPU tensors, got {device_type}'
    if attn_drop > 0:
        return 'the kernel does not apply attention dropout'
    return _load()[1]


def na2d(query, key, value, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
         rpb: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """na2d through the CPU op (why_not must have returned None)."""
    out_dtype = query.dtype
    compute = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    q, k, v = (t.to(compute) if t.stride(-1) == 1 else t.to(compute).contiguous() for t in (query, key, value))
    table = rpb.to(compute) if rpb is not None else None
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, table))
    out = na2d_cpu_forward(q, k, v, table, list(kernel_size), list(dilation), float(scale), keep)[0]
    return out.to(out_dtype)


# The kernel as torch.library ops: torch.compile and torch.export see one node each, with fake
# implementations for their shapes and autograd registered on the forward op.
@torch.library.custom_op('dinat_mm::na2d_cpu_forward', mutates_args=(), device_types='cpu')
def na2d_cpu_forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rpb: Optional[torch.Tensor],
                     kernel_size: List[int], dilation: List[int], scale: float, keep: bool
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(out [B, heads, H, W, D] as a view of [B, H, W, heads, D], attention weights
    [B, heads, H, W, kh*kw] kept for the backward, or an empty tensor unless ``keep``)."""
    out, attn = _load()[0].forward(query, key, value, rpb, kernel_size[0], kernel_size[1], dilation[0],
                                   dilation[1], scale, keep)
    return out.permute(0, 3, 1, 2, 4), (attn if keep else query.new_empty(0))


@na2d_cpu_forward.register_fake
def _(query, key, value, rpb, kernel_size, dilation, scale, keep):
    batch, heads, height, width, dim = query.shape
    attn = query.new_empty(batch, heads, height, width, kernel_size[0] * kernel_size[1]) if keep else \
        query.new_empty(0)
    return query.new_empty(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4), attn


@torch.library.custom_op('dinat_mm::na2d_cpu_backward', mutates_args=(), device_types='cpu')
def na2d_cpu_backward(grad_out: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attn: torch.Tensor, has_rpb: bool, kernel_size: List[int], dilation: List[int], scale: float
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d query, d key, d value, d rpb); d rpb is empty unless ``has_rpb``."""
    grad_out = grad_out.permute(0, 2, 3, 1, 4).contiguous()
    dq, dk, dv, drpb = _load()[0].backward(grad_out, query, key, value, attn, has_rpb, kernel_size[0],
                                           kernel_size[1], dilation[0], dilation[1], scale)
    return (*(g.permute(0, 3, 1, 2, 4) for g in (dq, dk, dv)), drpb if has_rpb else query.new_empty(0))


@na2d_cpu_backward.register_fake
def _(grad_out, query, key, value, attn, has_rpb, kernel_size, dilation, scale):
    batch, heads, height, width, dim = query.shape
    grads = [query.new_empty(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4) for _ in range(3)]
    return (*grads, query.new_empty(heads, 2 * kernel_size[0] - 1, 2 * kernel_size[1] - 1) if has_rpb
            else query.new_empty(0))


def _setup_context(ctx, inputs, output):
    query, key, value, rpb, kernel_size, dilation, scale, keep = inputs
    ctx.save_for_backward(query, key, value, output[1])
    ctx.geometry = (rpb is not None, kernel_size, dilation, scale)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_out, _grad_attn):
    query, key, value, attn = ctx.saved_tensors
    has_rpb, kernel_size, dilation, scale = ctx.geometry
    if attn.numel() == 0:
        raise RuntimeError('na2d cpu kernel: the forward ran with keep=False, so no attention weights were '
                           'saved for the backward')
    dq, dk, dv, drpb = na2d_cpu_backward(grad_out, query, key, value, attn, has_rpb, kernel_size, dilation, scale)
    return dq, dk, dv, (drpb if has_rpb else None), None, None, None, None


torch.library.register_autograd('dinat_mm::na2d_cpu_forward', _backward, setup_context=_setup_context)
