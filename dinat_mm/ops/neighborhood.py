"""natten's dilated neighbourhood rule, and the tiling plan the torch backend derives from it.

The rule (one definition, used by every backend-independent piece of dinat_mm): along an axis of
length L with kernel k and dilation d, index i lies in dilation group g = i % d at position
p = i // d of a group of length Lg = ceil((L - g) / d). Its window starts at

    s = max(p - k//2, 0) + (p + k//2 >= Lg) * (Lg - p - k//2 - 1)

and holds the indices (s + t) * d + g for t = 0..k-1: windows shift at the borders, never shrink.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Dict, List, Tuple

import numpy as np
import torch


def window_start(p: np.ndarray, group_len: int, kernel_size: int) -> np.ndarray:
    """Start (in group positions) of the window of the queries at group positions ``p``."""
    ns = kernel_size // 2
    return np.maximum(p - ns, 0) + (p + ns >= group_len) * (group_len - p - ns - 1)


@dataclass(frozen=True)
class AxisWindows:
    """The rule's tables for one axis, indexed by absolute index (positions are in group units)."""

    start: np.ndarray  # window start of the query at each index
    query_lo: np.ndarray  # first query position whose window holds the key at each index
    query_hi: np.ndarray  # last such query position (window starts never decrease within a group)
    first_bias: np.ndarray  # k - 1 + start - position: rpb index of each query's first neighbour


def axis_windows(length: int, kernel_size: int, dilation: int) -> AxisWindows:
    start, query_lo, query_hi, first_bias = (np.empty(length, dtype=np.int64) for _ in range(4))
    for g in range(min(dilation, length)):
        group_len = -(-(length - g) // dilation)
        p = np.arange(group_len)
        s = window_start(p, group_len, kernel_size)
        index = p * dilation + g
        start[index], first_bias[index] = s, kernel_size - 1 + s - p
        query_lo[index] = np.searchsorted(s + kernel_size - 1, p, side='left')
        query_hi[index] = np.searchsorted(s, p, side='right') - 1
    return AxisWindows(start, query_lo, query_hi, first_bias)


@dataclass(frozen=True)
class AxisPlan:
    """Tiles of one axis: each tile is ``tile`` consecutive queries of one dilation group and the
    ``region`` consecutive keys of that group that hold all of their windows."""

    tile: int
    region: int
    query_index: np.ndarray  # [n_tiles, tile] axis index of each query slot (padding repeats the last)
    key_index: np.ndarray  # [n_tiles, region] axis index of each key slot
    rpb_index: np.ndarray  # [n_tiles, tile, region] k-1 + (key pos - query pos), -1 outside the window
    slot_of: np.ndarray  # [L] tile * tile_size + slot that computes each axis index


def axis_plan(length: int, kernel_size: int, dilation: int, tile: int) -> AxisPlan:
    k, d = kernel_size, dilation
    longest = -(-length // d)
    n_tiles_per_group = -(-longest // max(1, min(tile, longest)))
    tile = -(-longest // n_tiles_per_group)  # balanced tiles: no group ends with a sliver
    region = min(tile + k - 1, longest)
    q_idx, k_idx, rel, slot_of = [], [], [], np.empty(length, dtype=np.int64)
    for g in range(min(d, length)):
        group_len = -(-(length - g) // d)
        for p0 in range(0, group_len, tile):
            p = np.minimum(p0 + np.arange(tile), group_len - 1)
            start = window_start(p, group_len, k)
            r0 = min(int(start[0]), group_len - region) if group_len >= region else 0
            r = r0 + np.arange(region)
            offset = r[None, :] - start[:, None]
            inside = (offset >= 0) & (offset < k) & (r[None, :] < group_len)
            rel.append(np.where(inside, k - 1 + r[None, :] - p[:, None], -1))
            q_idx.append(p * d + g)
            k_idx.append(np.where(r < group_len, r, 0) * d + g)
            n_valid = min(tile, group_len - p0)
            slot_of[(p0 + np.arange(n_valid)) * d + g] = (len(q_idx) - 1) * tile + np.arange(n_valid)
    return AxisPlan(tile, region, np.stack(q_idx), np.stack(k_idx), np.stack(rel), slot_of)


@dataclass
class Plan2D:
    """Flat gather indices for one (H, W, kernel, dilation) on one device.

    Queries are gathered into ``n_tiles`` tiles of ``tile_numel`` and keys into regions of
    ``region_numel``. Tiles are sorted by window pattern: the tiles in ``groups[u]`` (a range) all
    share ``bias_index[u]`` [tile_numel, region_numel], which selects from the flattened
    [(2kh-1)*(2kw-1) + 1] rpb table whose last entry is -inf (outside the window).
    """

    n_tiles: int
    tile_numel: int
    region_numel: int
    query_index: torch.Tensor  # [n_tiles * tile_numel] flat positions
    key_index: torch.Tensor  # [n_tiles * region_numel]
    output_index: torch.Tensor  # [H * W] slot that computed each position
    bias_index: torch.Tensor  # [n_patterns, tile_numel, region_numel], int64
    groups: Tuple[Tuple[int, int], ...]
    _batched: Dict[int, tuple] = field(default_factory=dict, repr=False)

    def batched(self, batch: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[int]]:
        """Indices over ``batch`` stacked maps, tiles ordered (pattern group, batch, tile): every
        group stays one contiguous run that can share its bias block.

        Returns (query rows, key rows, output rows, tiles per group)."""
        if batch not in self._batched:
            hw = self.output_index.numel()
            offsets = torch.arange(batch, device=self.output_index.device)[:, None] * hw

            def stack(index: torch.Tensor, size: int) -> torch.Tensor:
                per_tile = index.view(-1, size)
                return torch.cat([(offsets + per_tile[a:b].reshape(1, -1)).reshape(-1)
                                  for a, b in self.groups])

            tile, slot = self.output_index.div(self.tile_numel, rounding_mode='floor'), \
                self.output_index % self.tile_numel
            starts = torch.tensor([a for a, _ in self.groups], device=tile.device)
            counts = torch.tensor([b - a for a, b in self.groups], device=tile.device)
            group = torch.searchsorted(starts, tile, right=True) - 1
            first = starts[group] * batch + (tile - starts[group])
            out = (first[None] + offsets // hw * counts[group][None]) * self.tile_numel + slot[None]
            self._batched[batch] = (stack(self.query_index, self.tile_numel),
                                    stack(self.key_index, self.region_numel), out.reshape(-1),
                                    [int(c) * batch for c in counts])
        return self._batched[batch]


def default_tile(kernel_size: int) -> int:
    # Measured on 2 CPU threads: tiles about as wide as the kernel balance GEMM size against the
    # (tile + k - 1)^2 / k^2 work spent on keys outside the windows.
    return max(4, kernel_size)


@lru_cache(maxsize=64)
def plan_2d(height: int, width: int, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
            device: torch.device, tile: Tuple[int, int] = None) -> Plan2D:
    tile = tile or (default_tile(kernel_size[0]), default_tile(kernel_size[1]))
    rows = axis_plan(height, kernel_size[0], dilation[0], tile[0])
    cols = axis_plan(width, kernel_size[1], dilation[1], tile[1])
    ntr, ntc = len(rows.query_index), len(cols.query_index)
    row_patterns, row_pattern = np.unique(rows.rpb_index.reshape(ntr, -1), axis=0, return_inverse=True)
    col_patterns, col_pattern = np.unique(cols.rpb_index.reshape(ntc, -1), axis=0, return_inverse=True)
    pattern = (row_pattern.reshape(-1)[:, None] * len(col_patterns) + col_pattern.reshape(-1)[None, :]).reshape(-1)
    order = np.argsort(pattern, kind='stable')  # tile (tr * ntc + tc) at sorted position
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    tr, tc = np.divmod(order, ntc)

    def grid(r: np.ndarray, c: np.ndarray) -> np.ndarray:  # [tiles, a] x [tiles, b] -> [tiles, a*b]
        return (r[:, :, None] * width + c[:, None, :]).reshape(len(r), -1)

    query_index = grid(rows.query_index[tr], cols.query_index[tc])
    key_index = grid(rows.key_index[tr], cols.key_index[tc])
    n_cols = 2 * kernel_size[1] - 1
    outside = (2 * kernel_size[0] - 1) * n_cols
    used, first = np.unique(pattern[order], return_index=True)
    bounds = list(first) + [len(order)]
    bias_index = []
    for u in used:
        rr = row_patterns[u // len(col_patterns)].reshape(rows.tile, 1, rows.region, 1)
        rc = col_patterns[u % len(col_patterns)].reshape(1, cols.tile, 1, cols.region)
        bias_index.append(np.where((rr >= 0) & (rc >= 0), rr * n_cols + rc, outside)
                          .reshape(rows.tile * cols.tile, rows.region * cols.region))
    tile_r, slot_r = np.divmod(rows.slot_of, rows.tile)
    tile_c, slot_c = np.divmod(cols.slot_of, cols.tile)
    tile_of = rank[tile_r[:, None] * ntc + tile_c[None, :]]
    output_index = (tile_of * rows.tile + slot_r[:, None]) * cols.tile + slot_c[None, :]

    def as_index(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a).reshape(-1)).to(device=device, dtype=torch.int64)

    return Plan2D(ntr * ntc, rows.tile * cols.tile, rows.region * cols.region,
                  as_index(query_index), as_index(key_index), as_index(output_index),
                  torch.from_numpy(np.stack(bias_index)).to(device),
                  tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])))
