"""Brute-force references written from definitions, independent of dinat_mm's code."""
import math

import torch


def natten_window(length: int, kernel_size: int, dilation: int):
    """For every index of an axis, the k indices of its window, from natten's rule:
    group g = i % d, position p = i // d, group length Lg = ceil((L - g) / d), ns = k // 2,
    start s = max(p - ns, 0) + (p + ns >= Lg) * (Lg - p - ns - 1), members (s + t) * d + g."""
    ns = kernel_size // 2
    table = []
    for i in range(length):
        g, p = i % dilation, i // dilation
        group_len = math.ceil((length - g) / dilation)
        s = max(p - ns, 0) + (p + ns >= group_len) * (group_len - p - ns - 1)
        table.append([(s + t) * dilation + g for t in range(kernel_size)])
    return torch.tensor(table)


def na2d_brute(q, k, v, kernel_size, dilation, rpb=None, scale=None):
    """Softmax over each query's window of q.k*scale + rpb[h, kh-1 + drow/dh, kw-1 + dcol/dw], times
    the values; computed by gathering every window explicitly (O(N k^2) memory)."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    B, heads, H, W, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    rows, cols = natten_window(H, kh, dh), natten_window(W, kw, dw)  # [H, kh], [W, kw]
    r = rows[:, None, :, None].expand(H, W, kh, kw)
    c = cols[None, :, None, :].expand(H, W, kh, kw)
    k_nb, v_nb = k[:, :, r, c], v[:, :, r, c]  # [B, heads, H, W, kh, kw, D]
    logits = torch.einsum('bhijd,bhijxyd->bhijxy', q, k_nb) * scale
    if rpb is not None:
        i = torch.arange(H)[:, None, None, None]
        j = torch.arange(W)[None, :, None, None]
        logits = logits + rpb[:, kh - 1 + (r - i) // dh, kw - 1 + (c - j) // dw]
    attn = logits.flatten(-2).softmax(-1).view_as(logits)
    return torch.einsum('bhijxy,bhijxyd->bhijd', attn, v_nb)
