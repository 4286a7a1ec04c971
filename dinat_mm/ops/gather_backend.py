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
    query, key, value, rpb = _compute_dtype(query, key, value, rpb)
    key_index, bias_index = (t.to(query.device) for t in neighbour_tables(height, width, kernel_size, dilation))
    n = height * width
    q = query.reshape(batch, heads, n, 1, dim)
    k, v = (t.reshape(batch, heads, n, dim) for t in (key, value))
    chunk, outs = _max_queries or n, []
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        logits = _window_logits(q[:, :, rows], k, rpb, key_index[rows], bias_index[rows], scale)
        outs.append(torch.matmul(logits.softmax(-1), _neighbours(v, key_index[rows])))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.reshape(batch, heads, height, width, dim).to(out_dtype)


def attention_weights(query, key, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
                      rpb: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """Each query's softmax weights over its window, ``[batch, heads, height, width, kh*kw]``, the
    window's keys in row-major order (natten's ``natten2dqkrpb`` followed by a softmax)."""
    batch, heads, height, width, dim = (int(n) for n in query.shape)
    out_dtype = query.dtype
    query, key, _, rpb = _compute_dtype(query, key, key, rpb)
    key_index, bias_index = (t.to(query.device) for t in neighbour_tables(height, width, kernel_size, dilation))
    n = height * width
    logits = _window_logits(query.reshape(batch, heads, n, 1, dim), key.reshape(batch, heads, n, dim), rpb,
                            key_index, bias_index, scale)
    return logits.softmax(-1).reshape(batch, heads, height, width, -1).to(out_dtype)


def weighted_values(weights: torch.Tensor, value: torch.Tensor, kernel_size: Tuple[int, int],
                    dilation: Tuple[int, int]) -> torch.Tensor:
    """The values of each query's window summed by ``weights`` [batch, heads, height, width,
    kh*kw] (natten's ``natten2dav``): ``[batch, heads, height, width, head_dim]``."""
    batch, heads, height, width, dim = (int(n) for n in value.shape)
    out_dtype = value.dtype
    weights, value = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in (weights, value))
    key_index, _ = neighbour_tables(height, width, kernel_size, dilation)
    n = height * width
    v_nb = _neighbours(value.reshape(batch, heads, n, dim), key_index.to(value.device))
    out = torch.matmul(weights.reshape(batch, heads, n, 1, -1), v_nb)
    return out.reshape(batch, heads, height, width, dim).to(out_dtype)


def _compute_dtype(query, key, value, rpb):
    """Half precision is computed in float32, as the other paths do."""
    if query.dtype in (torch.float16, torch.bfloat16):
        query, key, value = (t.float() for t in (query, key, value))
        rpb = rpb.float() if rpb is not None else None
    return query, key, value, rpb


def _neighbours(x: torch.Tensor, key_index: torch.Tensor) -> torch.Tensor:
    """[batch, heads, n, dim] rows gathered for queries' windows: [batch, heads, queries, kh*kw, dim]."""
    batch, heads, _, dim = x.shape
    queries, kk = key_index.shape
    return x.index_select(2, key_index.reshape(-1)).reshape(batch, heads, queries, kk, dim)


def _window_logits(q, k, rpb, key_index, bias_index, scale: float) -> torch.Tensor:
    """q [batch, heads, queries, 1, dim] against its windows' keys, scaled, plus the bias:
    [batch, heads, queries, 1, kh*kw]."""
    logits = torch.matmul(q, _neighbours(k, key_index).transpose(-1, -2)) * scale
    if rpb is None:
        return logits
    heads = rpb.shape[0]
    queries, kk = bias_index.shape
    return logits + rpb.reshape(heads, -1).index_select(1, bias_index.reshape(-1)).reshape(heads, queries, 1, kk)
