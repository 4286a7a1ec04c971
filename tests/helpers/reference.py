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


def _windows(height, width, kernel_size, dilation):
    """Row and column index of every query's window members: two [H, W, kh, kw] tensors."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    rows, cols = natten_window(height, kh, dh), natten_window(width, kw, dw)  # [H, kh], [W, kw]
    return rows[:, None, :, None].expand(height, width, kh, kw), cols[None, :, None, :].expand(height, width, kh, kw)


def _pairs(kernel_size, dilation):
    kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    return kernel, (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)


def window_weights(q, k, kernel_size, dilation, rpb=None, scale=None):
    """Softmax over each query's window of q.k*scale + rpb[h, kh-1 + drow/dh, kw-1 + dcol/dw]:
    [B, heads, H, W, kh*kw], the window in row-major order (natten2dqkrpb, then the softmax)."""
    (kh, kw), (dh, dw) = _pairs(kernel_size, dilation)
    _, _, H, W, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    r, c = _windows(H, W, (kh, kw), (dh, dw))
    logits = torch.einsum('bhijd,bhijxyd->bhijxy', q, k[:, :, r, c]) * scale
    if rpb is not None:
        i = torch.arange(H)[:, None, None, None]
        j = torch.arange(W)[None, :, None, None]
        logits = logits + rpb[:, kh - 1 + (r - i) // dh, kw - 1 + (c - j) // dw]
    return logits.flatten(-2).softmax(-1)


def window_sum(weights, v, kernel_size, dilation):
    """Each query's window values summed by ``weights`` [B, heads, H, W, kh*kw] (natten2dav)."""
    kernel, dil = _pairs(kernel_size, dilation)
    r, c = _windows(v.shape[2], v.shape[3], kernel, dil)
    return torch.einsum('bhijn,bhijnd->bhijd', weights, v[:, :, r, c].flatten(4, 5))


def na2d_brute(q, k, v, kernel_size, dilation, rpb=None, scale=None):
    """Neighborhood attention computed by gathering every window explicitly (O(N k^2) memory)."""
    return window_sum(window_weights(q, k, kernel_size, dilation, rpb, scale), v, kernel_size, dilation)
