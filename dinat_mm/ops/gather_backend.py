"""na2d as gathers, matmuls and a softmax: the form exporters lower to standard operators (ONNX's
Gather, MatMul, Softmax), with no custom op. Exact, any device, no dropout; half precision is computed in float32.

Each query's k*k keys and values are gathered by fixed index tables that
:func:`dinat_mm.ops.neighborhood.axis_windows` computes for one map size, so a traced graph holds
them as constants: it serves that size only. Memory: the gathered keys and values are
N * k^2 * head_dim per head each, k^2 times the inputs; :func:`chunked` bounds it.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from .neighborhood import axis_windows


_max_queries: Optional[int] = None


@contextmanager
def chunked(max_queries: Optional[int]) -> Iterator[None]:
    """While active, each call gathers for at most ``max_queries`` queries at a time (None: all):
    the leaner form, for exports whose memory would otherwise be k^2 times the inputs'."""
    global _max_queries
    if max_queries is not None and max_queries < 1:
        raise ValueError(f'max_queries must be >= 1, got {max_queries}')
    previous, _max_queries = _max_queries, max_queries
    try:
        yield
    finally:
        _max_queries = previous


@lru_cache(maxsize=64)
def neighbour_tables(height: int, width: int, kernel_size: Tuple[int, int], dilation: Tuple[int, int]
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """([H*W, kh*kw] flat key index, [H*W, kh*kw] flat rpb index) of every query's neighbours."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    rows, cols = axis_windows(height, kh, dh), axis_windows(width, kw, dw)

    def neighbours(w, length, k, d):  # [L, k] absolute indices of each query's window
        index = np.arange(length)
        return (w.start[:, None] + np.arange(k)[None, :]) * d + (index % d)[:, None]

    row_nb, col_nb = neighbours(rows, height, kh, dh), neighbours(cols, width, kw, dw)
    key = row_nb[:, None, :, None] * width + col_nb[None, :, None, :]
    bias = (rows.first_bias[:, None, None, None] + np.arange(kh)[None, None, :, None]) * (2 * kw - 1) + \
        (cols.first_bias[None, :, None, None] + np.arange(kw)[None, None, None, :])
    # int32: half the size of the constants an exported graph holds (Gather takes either)
    return (torch.from_numpy(key.reshape(height * width, kh * kw).astype(np.int32)),
            torch.from_numpy(bias.reshape(height * width, kh * kw).astype(np.int32)))


def na2d(query, key, value, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
         rpb: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    batch, heads, height, width, dim = (int(n) for n in query.shape)
    out_dtype = query.dtype
    if out_dtype in (torch.float16, torch.bfloat16):  # computed in float32, as the other paths do
        query, key, value = (t.float() for t in (query, key, value))
        rpb = rpb.float() if rpb is not None else None
    key_index, bias_index = (t.to(query.device) for t in neighbour_tables(height, width, kernel_size, dilation))
    n, kk = height * width, kernel_size[0] * kernel_size[1]
    q = query.reshape(batch, heads, n, 1, dim)
    k, v = (t.reshape(batch, heads, n, dim) for t in (key, value))
    table = rpb.reshape(heads, -1) if rpb is not None else None
    chunk, outs = _max_queries or n, []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        index = key_index[start:stop].reshape(-1)
        k_nb = k.index_select(2, index).reshape(batch, heads, stop - start, kk, dim)
        v_nb = v.index_select(2, index).reshape(batch, heads, stop - start, kk, dim)
        logits = torch.matmul(q[:, :, start:stop], k_nb.transpose(-1, -2)) * scale  # [B, heads, n, 1, kk]
        if table is not None:
            logits = logits + table.index_select(1, bias_index[start:stop].reshape(-1)).reshape(
                heads, stop - start, 1, kk)
        outs.append(torch.matmul(logits.softmax(-1), v_nb))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.reshape(batch, heads, height, width, dim).to(out_dtype)
