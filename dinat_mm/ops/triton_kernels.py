"""Triton kernels of na2d: forward, and a backward in two kernels (query gradient; key and value
gradients), with and without rpb. This file holds only the ``@triton.jit`` sources; the launches,
the torch.library ops and the checks live in :mod:`dinat_mm.ops.triton_backend`.

The same sources run on CUDA and, with ``TRITON_INTERPRET=1`` set before triton is imported, in
Triton's interpreter on CPU tensors (how the tests run them).

A program takes a tile of TM x TN queries of one dilation group (positions in group units) and
walks the key rows that hold the tile's windows, one row at a time: a [TM*TN, BLOCK_KN] block of
scores by ``tl.dot``, keys outside each query's window masked to -inf, an online softmax
(FlashAttention's running max and sum). The window starts come from tables that
:func:`dinat_mm.ops.neighborhood.axis_windows` computes: the rule is not restated here. Nothing of
size N x N exists: the forward keeps O(N) log-sum-exps, the backward recomputes the probabilities
from them. The rpb gradient is not accumulated with atomics: the query-gradient kernel writes each
query's k*k logit gradients once, and a fixed reduction sums them (deterministic).
"""
import triton
import triton.language as tl


@triton.jit
def _tile(index, dilation, tiles, length, T: tl.constexpr):
    """Dilation group, first position and group length of tile ``index`` along one axis."""
    group = index // tiles
    return group, (index % tiles) * T, (length - group + dilation - 1) // dilation


@triton.jit
def _query_tile(tile, heads, H, W, dil_h, dil_w, tiles_h, tiles_w, ROW_START, COL_START,
                KH: tl.constexpr, KW: tl.constexpr, TM: tl.constexpr, TN: tl.constexpr, BLOCK_KN: tl.constexpr):
    """A program's TM x TN queries of one dilation group and the key block their windows need:
    (group row/col, query positions pi/pj, absolute qi/qj, valid, window starts si/sj, key rows
    [r_lo, r_hi), key columns cj (group units) and kj (absolute), in_cols [queries, keys])."""
    gi, pi0, lgi = _tile(tile // (dil_w * tiles_w), dil_h, tiles_h, H, TM)
    gj, pj0, lgj = _tile(tile % (dil_w * tiles_w), dil_w, tiles_w, W, TN)
    m = tl.arange(0, TM * TN)
    valid = (pi0 + m // TN < lgi) & (pj0 + m % TN < lgj)
    pi = tl.minimum(pi0 + m // TN, lgi - 1)  # clamped: every load stays in bounds, stores are masked
    pj = tl.minimum(pj0 + m % TN, lgj - 1)
    qi, qj = pi * dil_h + gi, pj * dil_w + gj
    si, sj = tl.load(ROW_START + qi), tl.load(COL_START + qj)
    # the key rows and columns (group units) that hold the tile's windows: starts never decrease
    r_lo = tl.load(ROW_START + tl.minimum(pi0, lgi - 1) * dil_h + gi)
    r_hi = tl.load(ROW_START + (tl.minimum(pi0 + TM, lgi) - 1) * dil_h + gi) + KH
    c_lo = tl.load(COL_START + tl.minimum(pj0, lgj - 1) * dil_w + gj)
    c_hi = tl.load(COL_START + (tl.minimum(pj0 + TN, lgj) - 1) * dil_w + gj) + KW
    cj = tl.minimum(c_lo + tl.arange(0, BLOCK_KN), c_hi - 1)
    in_cols = (cj[None, :] >= sj[:, None]) & (cj[None, :] < sj[:, None] + KW) & \
        (c_lo + tl.arange(0, BLOCK_KN) < c_hi)[None, :]
    return gi, gj, pi, pj, qi, qj, valid, si, sj, r_lo, r_hi, cj, cj * dil_w + gj, in_cols


@triton.jit
def _tile_operands(Q, K, V, RPB, b, h, qi, qj, pj, cj, kj, stride_qb, stride_qh, stride_qi, stride_qj,
                   stride_kb, stride_kh, stride_kj, stride_vb, stride_vh, stride_vj, D,
                   KH: tl.constexpr, KW: tl.constexpr, BLOCK_D: tl.constexpr):
    """The tile's queries, and pointers to its rpb columns and to the key/value block of key row 0
    (a row's offset is added per row): (d, dmask, q, bias_cols, k_base, v_base)."""
    d = tl.arange(0, BLOCK_D)
    dmask = d[None, :] < D
    q = tl.load(Q + b * stride_qb + h * stride_qh + qi[:, None] * stride_qi + qj[:, None] * stride_qj + d[None, :],
                mask=dmask, other=0.0)
    bias_cols = RPB + h * (2 * KH - 1) * (2 * KW - 1) + (KW - 1 + cj[None, :] - pj[:, None])
    k_base = K + b * stride_kb + h * stride_kh + kj[:, None] * stride_kj + d[None, :]
    v_base = V + b * stride_vb + h * stride_vh + kj[:, None] * stride_vj + d[None, :]
    return d, dmask, q, bias_cols, k_base, v_base


@triton.jit
def _key_row(q, k_ptrs, v_ptrs, bias_cols, ri, si, pi, in_cols, dmask, scale, KH: tl.constexpr, KW: tl.constexpr,
             HAS_RPB: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """Keys and values of key row ``ri`` (group units) and the tile's scores against them:
    (k, v, q.k * scale + rpb, inside each query's window)."""
    k = tl.load(k_ptrs, mask=dmask, other=0.0)
    v = tl.load(v_ptrs, mask=dmask, other=0.0)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION, out_dtype=ACC) * scale
    inside = in_cols & ((ri >= si) & (ri < si + KH))[:, None]
    if HAS_RPB:
        s += tl.load(bias_cols + (KH - 1 + ri - pi)[:, None] * (2 * KW - 1), mask=inside, other=0.0).to(ACC)
    return k, v, s, inside


@triton.jit
def na2d_forward_kernel(
        Q, K, V, RPB, OUT, LSE, ROW_START, COL_START,
        stride_qb, stride_qh, stride_qi, stride_qj, stride_kb, stride_kh, stride_ki, stride_kj,
        stride_vb, stride_vh, stride_vi, stride_vj,
        heads, H, W, D, dil_h, dil_w, tiles_h, tiles_w, scale,
        KH: tl.constexpr, KW: tl.constexpr, TM: tl.constexpr, TN: tl.constexpr, BLOCK_KN: tl.constexpr,
        BLOCK_D: tl.constexpr, HAS_RPB: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """OUT [B, H, W, heads, D] and LSE [B, heads, H, W] (natural log, scale and rpb included)."""
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // heads, bh % heads
    gi, gj, pi, pj, qi, qj, valid, si, sj, r_lo, r_hi, cj, kj, in_cols = _query_tile(
        tl.program_id(0), heads, H, W, dil_h, dil_w, tiles_h, tiles_w, ROW_START, COL_START, KH, KW, TM, TN, BLOCK_KN)
    d, dmask, q, bias_cols, k_base, v_base = _tile_operands(
        Q, K, V, RPB, b, h, qi, qj, pj, cj, kj, stride_qb, stride_qh, stride_qi, stride_qj, stride_kb, stride_kh,
        stride_kj, stride_vb, stride_vh, stride_vj, D, KH, KW, BLOCK_D)

    row_max = tl.full([TM * TN], float('-inf'), ACC)
    row_sum = tl.zeros([TM * TN], ACC)
    acc = tl.zeros([TM * TN, BLOCK_D], ACC)
    for ri in range(r_lo, r_hi):
        k, v, s, inside = _key_row(q, k_base + (ri * dil_h + gi) * stride_ki, v_base + (ri * dil_h + gi) * stride_vi,
                                   bias_cols, ri, si, pi, in_cols, dmask, scale, KH, KW, HAS_RPB, ACC, PRECISION)
        s = tl.where(inside, s, float('-inf'))
        new_max = tl.maximum(row_max, tl.max(s, 1))
        shift = tl.where(new_max == float('-inf'), 0.0, new_max)  # rows with no key yet stay at zero
        p = tl.exp(s - shift[:, None])
        alpha = tl.exp(row_max - shift)
        row_sum = row_sum * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION, out_dtype=ACC)
        row_max = new_max

    row_sum = tl.where(valid, row_sum, 1.0)
    position = (b * H + qi) * W + qj
    tl.store(OUT + position[:, None] * heads * D + h * D + d[None, :],
             (acc / row_sum[:, None]).to(OUT.dtype.element_ty), mask=valid[:, None] & dmask)
    tl.store(LSE + (bh * H + qi) * W + qj, row_max + tl.log(row_sum), mask=valid)


@triton.jit
def na2d_backward_query_kernel(
        Q, K, V, RPB, DO, LSE, DELTA, DQ, DS, ROW_START, COL_START,
        stride_qb, stride_qh, stride_qi, stride_qj, stride_kb, stride_kh, stride_ki, stride_kj,
        stride_vb, stride_vh, stride_vi, stride_vj,
        heads, H, W, D, dil_h, dil_w, tiles_h, tiles_w, scale,
        KH: tl.constexpr, KW: tl.constexpr, TM: tl.constexpr, TN: tl.constexpr, BLOCK_KN: tl.constexpr,
        BLOCK_D: tl.constexpr, HAS_RPB: tl.constexpr, STORE_DS: tl.constexpr, ACC: tl.constexpr,
        PRECISION: tl.constexpr):
    """DQ [B, H, W, heads, D]; with STORE_DS the logit gradients DS [B, heads, H, W, KH, KW]."""
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // heads, bh % heads
    gi, gj, pi, pj, qi, qj, valid, si, sj, r_lo, r_hi, cj, kj, in_cols = _query_tile(
        tl.program_id(0), heads, H, W, dil_h, dil_w, tiles_h, tiles_w, ROW_START, COL_START, KH, KW, TM, TN, BLOCK_KN)
    d, dmask, q, bias_cols, k_base, v_base = _tile_operands(
        Q, K, V, RPB, b, h, qi, qj, pj, cj, kj, stride_qb, stride_qh, stride_qi, stride_qj, stride_kb, stride_kh,
        stride_kj, stride_vb, stride_vh, stride_vj, D, KH, KW, BLOCK_D)
    position = (b * H + qi) * W + qj
    do = tl.load(DO + position[:, None] * heads * D + h * D + d[None, :], mask=dmask, other=0.0)
    lse = tl.load(LSE + (bh * H + qi) * W + qj)
    delta = tl.load(DELTA + (bh * H + qi) * W + qj)
    ds_base = DS + ((bh * H + qi) * W + qj)[:, None] * (KH * KW) + (cj[None, :] - sj[:, None])

    dq = tl.zeros([TM * TN, BLOCK_D], ACC)
    for ri in range(r_lo, r_hi):
        k, v, s, inside = _key_row(q, k_base + (ri * dil_h + gi) * stride_ki, v_base + (ri * dil_h + gi) * stride_vi,
                                   bias_cols, ri, si, pi, in_cols, dmask, scale, KH, KW, HAS_RPB, ACC, PRECISION)
        p = tl.where(inside, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION, out_dtype=ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION, out_dtype=ACC)
        if STORE_DS:
            tl.store(ds_base + ((ri - si) * KW)[:, None], ds, mask=inside & valid[:, None])
    tl.store(DQ + position[:, None] * heads * D + h * D + d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=valid[:, None] & dmask)


@triton.jit
def na2d_backward_key_value_kernel(
        Q, K, V, RPB, DO, LSE, DELTA, DK, DV, ROW_START, COL_START, ROW_QLO, ROW_QHI, COL_QLO, COL_QHI,
        stride_qb, stride_qh, stride_qi, stride_qj, stride_kb, stride_kh, stride_ki, stride_kj,
        stride_vb, stride_vh, stride_vi, stride_vj,
        heads, H, W, D, dil_h, dil_w, tiles_h, tiles_w, scale,
        KH: tl.constexpr, KW: tl.constexpr, TM: tl.constexpr, TN: tl.constexpr, BLOCK_KN: tl.constexpr,
        BLOCK_D: tl.constexpr, HAS_RPB: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """DK, DV [B, H, W, heads, D]: a tile of TM x TN keys against the queries whose windows hold
    them (one query row at a time, in chunks of BLOCK_KN columns)."""
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // heads, bh % heads
    gi, ri0, lgi = _tile(tl.program_id(0) // (dil_w * tiles_w), dil_h, tiles_h, H, TM)
    gj, cj0, lgj = _tile(tl.program_id(0) % (dil_w * tiles_w), dil_w, tiles_w, W, TN)
    m = tl.arange(0, TM * TN)
    valid = (ri0 + m // TN < lgi) & (cj0 + m % TN < lgj)
    ri = tl.minimum(ri0 + m // TN, lgi - 1)
    cj = tl.minimum(cj0 + m % TN, lgj - 1)
    ki, kj = ri * dil_h + gi, cj * dil_w + gj
    q_lo = tl.load(ROW_QLO + tl.minimum(ri0, lgi - 1) * dil_h + gi)
    q_hi = tl.load(ROW_QHI + (tl.minimum(ri0 + TM, lgi) - 1) * dil_h + gi) + 1
    qc_lo = tl.load(COL_QLO + tl.minimum(cj0, lgj - 1) * dil_w + gj)
    qc_hi = tl.load(COL_QHI + (tl.minimum(cj0 + TN, lgj) - 1) * dil_w + gj) + 1
    d = tl.arange(0, BLOCK_D)
    dmask = d[None, :] < D
    k = tl.load(K + b * stride_kb + h * stride_kh + ki[:, None] * stride_ki + kj[:, None] * stride_kj + d[None, :],
                mask=dmask, other=0.0)
    v = tl.load(V + b * stride_vb + h * stride_vh + ki[:, None] * stride_vi + kj[:, None] * stride_vj + d[None, :],
                mask=dmask, other=0.0)

    dk = tl.zeros([TM * TN, BLOCK_D], ACC)
    dv = tl.zeros([TM * TN, BLOCK_D], ACC)
    for pq in range(q_lo, q_hi):
        qrow = pq * dil_h + gi
        s_row = tl.load(ROW_START + qrow)
        in_rows = (ri >= s_row) & (ri < s_row + KH) & valid
        for c0 in range(qc_lo, qc_hi, BLOCK_KN):
            pqj = tl.minimum(c0 + tl.arange(0, BLOCK_KN), qc_hi - 1)
            qcol = pqj * dil_w + gj
            sjq = tl.load(COL_START + qcol)
            q = tl.load(Q + b * stride_qb + h * stride_qh + qrow * stride_qi + qcol[:, None] * stride_qj + d[None, :],
                        mask=dmask, other=0.0)
            position = (b * H + qrow) * W + qcol
            do = tl.load(DO + position[:, None] * heads * D + h * D + d[None, :], mask=dmask, other=0.0)
            lse = tl.load(LSE + (bh * H + qrow) * W + qcol)
            delta = tl.load(DELTA + (bh * H + qrow) * W + qcol)
            st = tl.dot(k, tl.trans(q), input_precision=PRECISION, out_dtype=ACC) * scale  # [keys, queries]
            inside = in_rows[:, None] & (cj[:, None] >= sjq[None, :]) & (cj[:, None] < sjq[None, :] + KW) & \
                (c0 + tl.arange(0, BLOCK_KN) < qc_hi)[None, :]
            if HAS_RPB:
                st += tl.load(RPB + h * (2 * KH - 1) * (2 * KW - 1) + (KH - 1 + ri - pq)[:, None] * (2 * KW - 1)
                              + (KW - 1 + cj[:, None] - pqj[None, :]), mask=inside, other=0.0).to(ACC)
            pt = tl.where(inside, tl.exp(st - lse[None, :]), 0.0)
            dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION, out_dtype=ACC)
            dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION, out_dtype=ACC)
            dk += tl.dot((pt * (dpt - delta[None, :])).to(q.dtype), q, input_precision=PRECISION, out_dtype=ACC)
    position = ((b * H + ki) * W + kj)[:, None] * heads * D + h * D + d[None, :]
    tl.store(DK + position, (dk * scale).to(DK.dtype.element_ty), mask=valid[:, None] & dmask)
    tl.store(DV + position, dv.to(DV.dtype.element_ty), mask=valid[:, None] & dmask)
