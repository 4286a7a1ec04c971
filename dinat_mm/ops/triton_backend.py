"""The Triton backend of na2d: launches of the kernels in :mod:`dinat_mm.ops.triton_kernels`, as
torch.library custom ops (``dinat_mm::na2d_triton_forward`` / ``_backward``) with fake
implementations and registered autograd, so that torch.compile and torch.export see one op.

It serves CUDA tensors where triton and a GPU are present, and CPU tensors where
``TRITON_INTERPRET=1`` was set before triton was imported (Triton's interpreter runs the same
kernel sources). Inputs are computed in their own dtype for float32/float64 and with float32
accumulation for float16/bfloat16; float32 ``tl.dot`` uses TF32 only where
``torch.backends.cuda.matmul.allow_tf32`` allows it, as torch's own matmuls do.
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import List, Optional, Tuple

import torch

from .neighborhood import axis_windows

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MAX_HEAD_DIM = 128
TILE = (8, 8)  # queries per program: TM rows x TN columns of one dilation group


@lru_cache(maxsize=1)
def _triton():
    """(kernels module, None) or (None, reason)."""
    try:
        kernels = importlib.import_module('dinat_mm.ops.triton_kernels')
    except Exception as exc:  # no triton, or one that cannot load here
        return None, f'triton is not importable ({type(exc).__name__}: {exc})'
    if interpreting():
        _interpreter_bfloat16_dot()
    return kernels, None


def _interpreter_bfloat16_dot() -> None:
    """Triton's interpreter (3.9) stores bfloat16 as raw uint16 bits and multiplies those bits in
    ``tl.dot``. Widen bfloat16 operands to float32 first: exact, and what the GPU's MMA computes
    (bf16 products, fp32 accumulation). Only the interpreter is touched, never compiled kernels."""
    import triton.language as tl
    from triton.runtime import interpreter
    builder = interpreter.InterpreterBuilder
    if getattr(builder.create_dot, 'widens_bfloat16', False):
        return
    original = builder.create_dot

    def create_dot(self, a, b, d, *args, **kwargs):
        a, b = (self.cast_impl(x, tl.float32) if x.dtype.scalar == tl.bfloat16 else x for x in (a, b))
        return original(self, a, b, d, *args, **kwargs)

    create_dot.widens_bfloat16 = True
    builder.create_dot = create_dot


def interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0').lower() in ('1', 'true', 'on', 'yes')


def why_not(device_type: str, dtype: torch.dtype, head_dim: int, kernel_size: Tuple[int, int],
            attn_drop: float) -> Optional[str]:
    """None if the Triton kernels serve this call, else the reason they do not."""
    kernels, reason = _triton()
    if kernels is None:
        return reason
    if device_type == 'cpu':
        if not interpreting():
            return 'the Triton kernels run on CUDA tensors, or on CPU tensors only with TRITON_INTERPRET=1'
    elif device_type != 'cuda':
        return f'the Triton kernels run on CUDA tensors, got {device_type}'
    elif not torch.cuda.is_available():
        return 'no CUDA device is available'
    if dtype not in DTYPES:
        return f'the Triton kernels take float32, float16, bfloat16 or float64, got {dtype}'
    if head_dim > MAX_HEAD_DIM:
        return f'the Triton kernels take head_dim <= {MAX_HEAD_DIM}, got {head_dim}'
    if attn_drop > 0:
        return 'the Triton kernels do not apply attention dropout'
    return None


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def kernel_constants(dtype: torch.dtype, head_dim: int, kernel_size: Tuple[int, int], has_rpb: bool) -> dict:
    """The compile-time constants a launch uses (also what tests compile ahead of time)."""
    import triton.language as tl
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    return dict(KH=kernel_size[0], KW=kernel_size[1], TM=TILE[0], TN=TILE[1],
                BLOCK_KN=max(16, _next_pow2(TILE[1] + kernel_size[1] - 1)),
                BLOCK_D=max(16, _next_pow2(head_dim)), HAS_RPB=has_rpb,
                ACC=tl.float64 if dtype == torch.float64 else tl.float32,
                PRECISION='tf32' if dtype == torch.float32 and allow_tf32 else 'ieee')


@lru_cache(maxsize=64)
def _tables(length: int, kernel_size: int, dilation: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Per-axis int32 tables of the neighbourhood rule: window start, first and last query that
    sees each key (group units), and each query's first rpb index."""
    w = axis_windows(length, kernel_size, dilation)
    return tuple(torch.from_numpy(a).to(device=device, dtype=torch.int32)
                 for a in (w.start, w.query_lo, w.query_hi, w.first_bias))


def _grid(shape, kernel_size, dilation):
    batch, heads, height, width, _ = shape
    tiles = [-(-(-(-n // d)) // t) for n, d, t in zip((height, width), dilation, TILE)]
    return (dilation[0] * tiles[0] * dilation[1] * tiles[1], batch * heads), tiles


def _strides(*tensors) -> List[int]:
    return [s for t in tensors for s in t.stride()[:4]]


def _forward(query, key, value, rpb, kernel_size, dilation, scale):
    kernels = _triton()[0]
    batch, heads, height, width, dim = query.shape
    rows, cols = _tables(height, kernel_size[0], dilation[0], query.device), \
        _tables(width, kernel_size[1], dilation[1], query.device)
    out = query.new_empty(batch, height, width, heads, dim)
    lse = query.new_empty(batch, heads, height, width,
                          dtype=torch.float64 if query.dtype == torch.float64 else torch.float32)
    grid, tiles = _grid(query.shape, kernel_size, dilation)
    table = rpb.contiguous() if rpb is not None else query.new_empty(0)
    kernels.na2d_forward_kernel[grid](
        query, key, value, table, out, lse, rows[0], cols[0], *_strides(query, key, value),
        heads, height, width, dim, dilation[0], dilation[1], tiles[0], tiles[1], scale,
        **kernel_constants(query.dtype, dim, kernel_size, rpb is not None))
    return out, lse


def _backward(grad_out, query, key, value, rpb, out, lse, kernel_size, dilation, scale, rpb_grad):
    kernels = _triton()[0]
    batch, heads, height, width, dim = query.shape
    rows, cols = _tables(height, kernel_size[0], dilation[0], query.device), \
        _tables(width, kernel_size[1], dilation[1], query.device)
    delta = (grad_out.to(lse.dtype) * out.to(lse.dtype)).sum(-1).contiguous()  # [B, heads, H, W]
    grad_out = grad_out.permute(0, 2, 3, 1, 4).contiguous()  # the kernels' [B, H, W, heads, D]
    grid, tiles = _grid(query.shape, kernel_size, dilation)
    table = rpb.contiguous() if rpb is not None else query.new_empty(0)
    constants = kernel_constants(query.dtype, dim, kernel_size, rpb is not None)
    common = (*_strides(query, key, value), heads, height, width, dim, dilation[0], dilation[1],
              tiles[0], tiles[1], scale)
    dq, dk, dv = (torch.empty_like(grad_out) for _ in range(3))
    ds = (lse.new_empty(batch, heads, height, width, kernel_size[0], kernel_size[1]) if rpb_grad
          else lse.new_empty(0))
    kernels.na2d_backward_query_kernel[grid](
        query, key, value, table, grad_out, lse, delta, dq, ds, rows[0], cols[0], *common,
        STORE_DS=rpb_grad, **constants)
    kernels.na2d_backward_key_value_kernel[grid](
        query, key, value, table, grad_out, lse, delta, dk, dv, rows[0], cols[0], rows[1], rows[2],
        cols[1], cols[2], *common, **constants)
    drpb = rpb_gradient(ds, rows[3], cols[3], kernel_size).to(rpb.dtype) if rpb_grad else query.new_empty(0)
    return (*(g.permute(0, 3, 1, 2, 4) for g in (dq, dk, dv)), drpb)


def rpb_gradient(ds: torch.Tensor, row_first_bias: torch.Tensor, col_first_bias: torch.Tensor,
                 kernel_size: Tuple[int, int]) -> torch.Tensor:
    """d rpb[h, r, c] = sum of the logit gradients ds [B, heads, H, W, kh, kw] whose neighbour
    (t, u) of query (i, j) has rpb index (first_bias_row[i] + t, first_bias_col[j] + u): two
    contractions with fixed one-hot matrices, so the sum is the same on every run."""
    kh, kw = kernel_size
    onehot_rows = torch.nn.functional.one_hot(row_first_bias.long()[:, None] + torch.arange(kh, device=ds.device),
                                              2 * kh - 1).to(ds.dtype)  # [H, kh, 2kh-1]
    onehot_cols = torch.nn.functional.one_hot(col_first_bias.long()[:, None] + torch.arange(kw, device=ds.device),
                                              2 * kw - 1).to(ds.dtype)  # [W, kw, 2kw-1]
    by_col = torch.einsum('bhijtu,juc->hitc', ds, onehot_cols)
    return torch.einsum('hitc,itr->hrc', by_col, onehot_rows).contiguous()


@torch.library.custom_op('dinat_mm::na2d_triton_forward', mutates_args=())
def na2d_triton_forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rpb: Optional[torch.Tensor],
                        kernel_size: List[int], dilation: List[int], scale: float
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(out [B, heads, H, W, D] as a view of [B, H, W, heads, D], log-sum-exp [B, heads, H, W])."""
    out, lse = _forward(query, key, value, rpb, tuple(kernel_size), tuple(dilation), scale)
    return out.permute(0, 3, 1, 2, 4), lse


@na2d_triton_forward.register_fake
def _(query, key, value, rpb, kernel_size, dilation, scale):
    batch, heads, height, width, dim = query.shape
    lse_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    return (query.new_empty(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4),
            query.new_empty(batch, heads, height, width, dtype=lse_dtype))


@torch.library.custom_op('dinat_mm::na2d_triton_backward', mutates_args=())
def na2d_triton_backward(grad_out: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         rpb: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor, kernel_size: List[int],
                         dilation: List[int], scale: float, rpb_grad: bool
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d query, d key, d value, d rpb); d rpb is empty unless ``rpb_grad``."""
    return _backward(grad_out, query, key, value, rpb, out, lse, tuple(kernel_size), tuple(dilation), scale,
                     rpb_grad)


@na2d_triton_backward.register_fake
def _(grad_out, query, key, value, rpb, out, lse, kernel_size, dilation, scale, rpb_grad):
    batch, heads, height, width, dim = query.shape
    grads = [query.new_empty(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4) for _ in range(3)]
    return (*grads, rpb.new_empty(rpb.shape) if rpb_grad else query.new_empty(0))


def _setup_context(ctx, inputs, output):
    query, key, value, rpb, kernel_size, dilation, scale = inputs
    ctx.save_for_backward(query, key, value, rpb, *output)
    ctx.geometry = (kernel_size, dilation, scale)
    ctx.mark_non_differentiable(output[1])


def _autograd_backward(ctx, grad_out, _grad_lse):
    query, key, value, rpb, out, lse = ctx.saved_tensors
    kernel_size, dilation, scale = ctx.geometry
    rpb_grad = rpb is not None and ctx.needs_input_grad[3]
    dq, dk, dv, drpb = na2d_triton_backward(grad_out, query, key, value, rpb, out, lse, kernel_size, dilation,
                                            scale, rpb_grad)
    return dq, dk, dv, (drpb if rpb_grad else None), None, None, None


torch.library.register_autograd('dinat_mm::na2d_triton_forward', _autograd_backward, setup_context=_setup_context)


def na2d(query, key, value, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
         rpb: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """na2d through the Triton op (why_not must have returned None)."""
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
    table = rpb.to(q.dtype) if rpb is not None else None
    return na2d_triton_forward(q, k, v, table, list(kernel_size), list(dilation), float(scale))[0]


KERNELS = ('na2d_forward_kernel', 'na2d_backward_query_kernel', 'na2d_backward_key_value_kernel')
_TRITON_TYPES = {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16', torch.float64: 'fp64'}


def compile_for(kernel: str, capability: int, dtype: torch.dtype, head_dim: int, kernel_size: Tuple[int, int],
                has_rpb: bool, warp_size: int = 32):
    """Compile one kernel ahead of time for an NVIDIA GPU of compute ``capability`` (80, 90, ...)
    without a GPU, with the argument types and constants a launch of this configuration uses.
    Returns triton's CompiledKernel (``.metadata.shared`` is its shared memory in bytes)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = getattr(_triton()[0], kernel)
    constants = kernel_constants(dtype, head_dim, kernel_size, has_rpb)
    if kernel == 'na2d_backward_query_kernel':
        constants['STORE_DS'] = has_rpb
    data, accumulate = _TRITON_TYPES[dtype], 'fp64' if dtype == torch.float64 else 'fp32'
    signature = {}
    for name in fn.arg_names:
        if name in constants:
            signature[name] = 'constexpr'
        elif name in ('LSE', 'DELTA', 'DS'):
            signature[name] = '*' + accumulate
        elif name.startswith(('ROW_', 'COL_')):
            signature[name] = '*i32'
        elif name.isupper() and name not in ('H', 'W', 'D'):  # tensors; H, W, D are sizes
            signature[name] = '*' + data
        else:
            signature[name] = 'fp32' if name == 'scale' else 'i32'
    return triton.compile(ASTSource(fn, signature, constexprs=constants),
                          target=GPUTarget('cuda', capability, warp_size))
