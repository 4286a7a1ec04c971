"""The layers every family shares: the neighbourhood-attention layer (the release's
``NATransformerLayer``: norm1, attn, norm2, mlp, optional gamma1/gamma2), its attention module, the MLP,
the patch embedding of DiNAT_s and the isotropic models, and the release's initialisation."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model.weight_init import trunc_normal_

from ..ops import na2d


class PatchEmbed(nn.Module):
    """DiNAT_s's (Swin's) tokenizer: the input zero-padded right/bottom to a multiple of
    ``patch_size``, one patch_size x patch_size convolution of that stride, then (patch_norm) a
    LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NCHW -> NHWC
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % self.patch_size, 0, -height % self.patch_size))
        x = self.proj(x).permute(0, 2, 3, 1)
        return x if self.norm is None else self.norm(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class NeighborhoodAttention2D(nn.Module):
    """qkv projection, per-head relative positional bias (rpb), na2d, output projection."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: int, qkv_bias: bool,
                 qk_scale: Optional[float], attn_drop: float, proj_drop: float, backend: str):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.kernel_size, self.dilation, self.backend = kernel_size, dilation, backend
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, W, C]
        batch, height, width, channels = x.shape
        # Maps smaller than the dilated window are zero-padded right/bottom before qkv and cropped
        # after attention: the reference implementations do this and the checkpoints rely on it.
        window = self.kernel_size * self.dilation
        pad_h, pad_w = max(0, window - height), max(0, window - width)
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        qkv = self.qkv(x).reshape(batch, height + pad_h, width + pad_w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        out = na2d(q, k, v, self.kernel_size, self.dilation, rpb=self.rpb, scale=self.scale,
                   backend=self.backend, attn_drop=self.attn_drop if self.training else 0.0)
        out = out.permute(0, 2, 3, 1, 4).reshape(batch, height + pad_h, width + pad_w, channels)
        return self.proj_drop(self.proj(out[:, :height, :width]))


class NATLayer(nn.Module):
    """x + drop_path(gamma1 * NA(LN(x))), then x + drop_path(gamma2 * MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: int, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: Optional[float], drop: float, attn_drop: float,
                 drop_path: float, layer_scale: Optional[float], backend: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation, qkv_bias, qk_scale,
                                            attn_drop, drop, backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn(self.norm1(x))
        if self.layer_scale:
            x = x + self.drop_path(self.gamma1 * attn)
            return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))
        x = x + self.drop_path(attn)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_release_weights(module: nn.Module) -> None:
    """The release's initialisation: linear weights truncated-normal (std 0.02) with zero bias,
    LayerNorms at identity, rpb tables truncated-normal (std 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, NeighborhoodAttention2D):
            trunc_normal_(m.rpb, std=0.02)
