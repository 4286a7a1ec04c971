"""Delegation to natten, only where the installed natten serves the call.

- natten >= 0.20 (fused kernels): no relative positional bias, no CPU kernels (on CPU its only
  path builds the full N x N matrix), so it serves CUDA calls without rpb.
- natten 0.17.x (na2d_qk / na2d_av with rpb): serves CUDA calls with or without rpb. Its CPU
  kernels run at about 0.1 GFLOP/s, so dinat_mm does not send CPU work there.
- Anything else, or no natten at all: serves nothing.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Optional, Tuple

import torch


@lru_cache(maxsize=1)
def _natten():
    """(module, api) with api in {'fused', 'qk_av'}, or (None, reason)."""
    try:
        natten = importlib.import_module('natten')
    except Exception as exc:  # natten 0.17 fails to import on CPU-only torch 2.13
        return None, f'natten is not importable ({type(exc).__name__}: {exc})'
    functional = importlib.import_module('natten.functional')
    if hasattr(functional, 'na2d_qk') and hasattr(functional, 'na2d_av'):
        return functional, 'qk_av'
    if hasattr(functional, 'na2d'):
        return functional, 'fused'
    return None, f'natten {getattr(natten, "__version__", "?")} has no 2-D neighborhood attention API'


def why_not(device_type: str, has_rpb: bool, attn_drop: float = 0.0) -> Optional[str]:
    """None if natten serves a call on ``device_type`` tensors, else the reason it does not."""
    module, api = _natten()
    if module is None:
        return api
    if attn_drop > 0:
        return 'dinat_mm does not apply attention dropout through natten'
    if device_type != 'cuda':
        return ('natten has no usable CPU path here (>= 0.20 builds the full N x N matrix on CPU, '
                '0.17 runs at about 0.1 GFLOP/s); use the torch backend')
    if api == 'fused' and has_rpb:
        return 'natten >= 0.20 has no relative positional bias (rpb)'
    return None


def na2d(query, key, value, kernel_size: Tuple[int, int], dilation: Tuple[int, int], rpb, scale: float):
    functional, api = _natten()
    if api == 'fused':  # heads-last layout [B, H, W, heads, D]
        q, k, v = (t.permute(0, 2, 3, 1, 4) for t in (query, key, value))
        out = functional.na2d(q, k, v, kernel_size=kernel_size, dilation=dilation, scale=scale)
        return out.permute(0, 3, 1, 2, 4)
    attn = functional.na2d_qk(query * scale, key, kernel_size, dilation, rpb=rpb)
    return functional.na2d_av(attn.softmax(dim=-1), value, kernel_size, dilation)
