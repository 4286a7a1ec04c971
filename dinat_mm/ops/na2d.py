"""2-D (dilated) neighborhood attention: the operator, its argument checks and backend dispatch."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import cpu_kernel, gather_backend, natten_backend, triton_backend
from .neighborhood import plan_2d

IntPair = Union[int, Sequence[int]]
BACKENDS = ('auto', 'torch', 'cpu', 'triton', 'gather', 'natten')
# What 'auto' tries, in order, for tensors on each device type; the torch path serves everything.
# natten (>= 0.20: no rpb) comes after the Triton kernels on CUDA: no measurement has shown it faster.
AUTO_ORDER = {'cuda': ('triton', 'natten', 'torch'), 'cpu': ('cpu', 'torch')}


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f'{name} must be an int or a pair of ints, got {value!r}')
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f'{name} must be an int or a pair of ints, got {value!r}')


def check_args(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel_size: IntPair,
               dilation: IntPair, rpb: Optional[torch.Tensor], backend: str
               ) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Validate na2d's arguments; returns (kernel_size, dilation) as pairs."""
    ks, dil = _pair(kernel_size, 'kernel_size'), _pair(dilation, 'dilation')
    if any(k < 3 or k % 2 == 0 for k in ks):
        raise ValueError(f'kernel_size must be odd and >= 3, got {kernel_size!r}')
    if any(d < 1 for d in dil):
        raise ValueError(f'dilation must be >= 1, got {dilation!r}')
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    for name, t in (('query', query), ('key', key), ('value', value)):
        if not isinstance(t, torch.Tensor) or t.dim() != 5:
            raise ValueError(f'{name} must be a 5-D tensor [batch, heads, height, width, head_dim], '
                             f'got {getattr(t, "shape", type(t))}')
        if not t.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got {t.dtype}')
    if key.shape != query.shape or value.shape != query.shape:
        raise ValueError(f'query, key and value must have the same shape, got '
                         f'{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}')
    if len({query.dtype, key.dtype, value.dtype}) != 1 or len({query.device, key.device, value.device}) != 1:
        raise ValueError('query, key and value must share one dtype and one device')
    _, heads, height, width, _ = query.shape
    if height < ks[0] * dil[0] or width < ks[1] * dil[1]:
        raise ValueError(
            f'input of {height}x{width} (height x width) is smaller than kernel_size*dilation = '
            f'{ks[0] * dil[0]}x{ks[1] * dil[1]}; pad it first (the DiNAT backbone does)')
    if rpb is not None:
        expected = (heads, 2 * ks[0] - 1, 2 * ks[1] - 1)
        if tuple(rpb.shape) != expected:
            raise ValueError(f'rpb must have shape [heads, 2*kh-1, 2*kw-1] = {list(expected)}, '
                             f'got {list(rpb.shape)}')
    return ks, dil


def na2d(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel_size: IntPair,
         dilation: IntPair = 1, rpb: Optional[torch.Tensor] = None, scale: Optional[float] = None,
         backend: str = 'auto', attn_drop: float = 0.0) -> torch.Tensor:
    """Dilated neighborhood attention over a 2-D map.

    Each query attends to its ``kernel_size`` neighbours under natten's rule (see
    :mod:`dinat_mm.ops.neighborhood`): softmax over the window of
    ``q . k * scale + rpb[h, k-1 + drow/d, k-1 + dcol/d]``, then the weighted sum of the values.

    Args:
        query, key, value: ``[batch, heads, height, width, head_dim]``.
        kernel_size: odd int >= 3, or an (h, w) pair.
        dilation: int >= 1, or an (h, w) pair. height >= kh*dh and width >= kw*dw.
        rpb: optional relative positional bias ``[heads, 2kh-1, 2kw-1]``.
        scale: defaults to ``head_dim ** -0.5``.
        backend: ``'torch'`` (exact pure PyTorch, the reference and the fallback), ``'cpu'`` (the
            compiled CPU kernel of :mod:`dinat_mm.ops.cpu_kernel`), ``'triton'`` (the Triton
            kernels of :mod:`dinat_mm.ops.triton_backend`: CUDA, or CPU under
            ``TRITON_INTERPRET=1``), ``'gather'`` (gathers, matmuls and a softmax: what ONNX
            export lowers to, :mod:`dinat_mm.ops.gather_backend`), ``'natten'``, or ``'auto'``: the first that serves of
            :data:`AUTO_ORDER` for the tensors' device (CUDA: triton, natten, torch; CPU: the
            CPU kernel, torch). A named backend that cannot serve the call is an error that gives
            the reason.
        attn_drop: dropout probability on the attention weights (training only).

    Returns:
        ``[batch, heads, height, width, head_dim]`` in the dtype of ``query``.
    """
    ks, dil = check_args(query, key, value, kernel_size, dilation, rpb, backend)
    if scale is None:
        scale = query.shape[-1] ** -0.5
    if torch.jit.is_tracing():  # one opaque node, so that FLOP counters see na2d (dinat_mm.analysis)
        table = rpb if rpb is not None else query.new_zeros(query.shape[1], 2 * ks[0] - 1, 2 * ks[1] - 1)
        return NA2DTraced.apply(query, key, value, table, rpb is not None, ks, dil, scale)
    # choose_backend takes constants and only asks whether there is dropout. Under
    # torch.compile(dynamic=True) a module's float (attn_drop) arrives symbolic; a branch on it
    # gives a constant (dynamo guards on the branch). The rate itself goes to na2d_torch below.
    dropout = 1.0 if attn_drop > 0 else 0.0
    chosen = choose_backend(backend, query.device.type, query.dtype, int(query.shape[-1]), ks,
                            rpb is not None, dropout)
    if chosen == 'triton':
        return triton_backend.na2d(query, key, value, ks, dil, rpb, scale)
    if chosen == 'cpu':
        return cpu_kernel.na2d(query, key, value, ks, dil, rpb, scale)
    if chosen == 'natten':
        return natten_backend.na2d(query, key, value, ks, dil, rpb, scale)
    if chosen == 'gather':
        return gather_backend.na2d(query, key, value, ks, dil, rpb, scale)
    return na2d_torch(query, key, value, ks, dil, rpb, scale, attn_drop)


def why_not(name: str, device_type: str, dtype: torch.dtype, head_dim: int, kernel_size: Tuple[int, int],
            has_rpb: bool, attn_drop: float) -> Optional[str]:
    """None if backend ``name`` serves such a call, else the reason it does not."""
    if name == 'triton':
        return triton_backend.why_not(device_type, dtype, head_dim, kernel_size, attn_drop)
    if name == 'cpu':
        return cpu_kernel.why_not(device_type, attn_drop)
    if name == 'natten':
        return natten_backend.why_not(device_type, has_rpb, attn_drop)
    if name == 'gather' and attn_drop > 0:
        return 'the gather form does not apply attention dropout'
    return None  # torch, gather


# Decided from Python values only, so torch.compile runs it once while tracing and keeps the answer
# (no graph break, no guard on the kernels' build state).
@torch.compiler.assume_constant_result
def choose_backend(backend: str, device_type: str, dtype: torch.dtype, head_dim: int,
                   kernel_size: Tuple[int, int], has_rpb: bool, attn_drop: float) -> str:
    """The backend that runs a call: ``backend`` itself where it serves (an error naming the
    reason where it cannot), or for 'auto' the first of AUTO_ORDER[device_type] that serves."""
    if backend != 'auto':
        reason = why_not(backend, device_type, dtype, head_dim, kernel_size, has_rpb, attn_drop)
        if reason is not None:
            raise RuntimeError(f"backend='{backend}' cannot serve this call: {reason}")
        return backend
    for name in AUTO_ORDER.get(device_type, ('torch',)):
        if why_not(name, device_type, dtype, head_dim, kernel_size, has_rpb, attn_drop) is None:
            return name
    return 'torch'


def na2d_torch(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel_size: Tuple[int, int],
               dilation: Tuple[int, int], rpb: Optional[torch.Tensor], scale: float,
               attn_drop: float = 0.0) -> torch.Tensor:
    """Exact pure-PyTorch path: tiles of queries against the key regions that hold their windows.

    Memory is O(N * k^2): a tile of t*t queries scores (t+k-1)^2 keys; keys outside a query's
    window get -inf. Tiles that share a window pattern share one bias block, broadcast inside
    scaled_dot_product_attention. Half precision is computed in float32.
    """
    out_dtype = query.dtype
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    batch, heads, height, width, dim = (int(n) for n in query.shape)  # ints also under jit tracing
    plan = plan_2d(height, width, kernel_size, dilation, query.device)
    query_rows, key_rows, output_rows, group_sizes = plan.batched(batch)

    def gather(x: torch.Tensor, index: torch.Tensor, size: int) -> Tuple[torch.Tensor, ...]:
        # Positions as rows of heads*dim: whole-row copies are several times faster than a gather
        # along a middle dimension. The [heads, tiles, size, dim] view needs no copy: the flash
        # kernel of scaled_dot_product_attention reads it strided.
        rows = x.permute(0, 2, 3, 1, 4).reshape(batch * height * width, heads * dim).to(compute)
        tiles = rows.index_select(0, index).view(-1, size, heads, dim).permute(2, 0, 1, 3)
        return tiles.split(group_sizes, dim=1)  # split, not slicing: its backward is one cat

    queries = gather(query, query_rows, plan.tile_numel)
    keys = gather(key, key_rows, plan.region_numel)
    values = gather(value, key_rows, plan.region_numel)
    slots = (2 * kernel_size[0] - 1) * (2 * kernel_size[1] - 1)  # the table's last entry is -inf
    rows_rpb = query.new_zeros((1, slots), dtype=compute) if rpb is None else rpb.reshape(heads, slots).to(compute)
    table = torch.cat([rows_rpb, rows_rpb.new_full((rows_rpb.shape[0], 1), float('-inf'))], 1)
    bias = table[:, plan.bias_index]  # [heads or 1, patterns, tile_numel, region_numel]
    out = torch.cat([_attend(q, k, v, bias[:, u, None], scale, attn_drop)
                     for u, (q, k, v) in enumerate(zip(queries, keys, values))], dim=1)
    out = out.view(heads, -1, dim).index_select(1, output_rows)
    return out.view(heads, batch, height, width, dim).transpose(0, 1).to(out_dtype)


_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _attend(q, k, v, bias, scale: float, attn_drop: float) -> torch.Tensor:
    """Softmax(q k^T * scale + bias) v for [heads, tiles, t, d] blocks sharing one bias block."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, bias))
    if needs_grad and attn_drop == 0.0 and q.device.type == 'cpu':
        return _FlashWithBiasGrad.apply(q, k, v, bias, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale, dropout_p=attn_drop)


class _FlashWithBiasGrad(torch.autograd.Function):
    """PyTorch's fused CPU attention, forward and backward, plus the gradient of the bias (rpb),
    which the fused kernels do not give: scaled_dot_product_attention would otherwise fall back to
    its unfused path whenever rpb needs a gradient. dbias = sum over tiles of P * (dP - rowsum(dO*O)),
    with P rebuilt from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v, bias, scale):
        out, lse = _flash(q, k, v, 0.0, False, attn_mask=bias, scale=scale)
        ctx.save_for_backward(q, k, v, bias, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        dq, dk, dv = _flash_backward(grad_out, q, k, v, out, lse, 0.0, False, attn_mask=bias, scale=ctx.scale)
        dbias = None
        if ctx.needs_input_grad[3]:
            p = torch.matmul(q, k.transpose(-1, -2)).mul_(ctx.scale).add_(bias).sub_(lse.unsqueeze(-1)).exp_()
            dp = torch.matmul(grad_out, v.transpose(-1, -2)).sub_((grad_out * out).sum(-1, keepdim=True))
            dbias = p.mul_(dp).sum(dim=1, keepdim=True)
            if bias.shape[0] == 1:
                dbias = dbias.sum(dim=0, keepdim=True)
        return dq, dk, dv, dbias, None


class NA2DTraced(torch.autograd.Function):
    """na2d as a single ``prim::PythonOp.NA2DTraced`` node in torch.jit traces (forward only):
    its inputs' shapes are all a FLOP counter needs (kernel size from the rpb table's shape)."""

    @staticmethod
    def forward(ctx, query, key, value, table, has_rpb, kernel_size, dilation, scale):
        # Tracing paused: the plan caches must not hold values of this trace.
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            out = na2d_torch(query, key, value, kernel_size, dilation, table if has_rpb else None, scale)
        finally:
            torch._C._set_tracing_state(state)
        return out.contiguous()
