"""The isotropic NAT and DiNAT of the DiNAT release (``classification/isotropic.py``): a ViT-like
stack at one resolution (a 16x16 patch embedding, no downsampling) whose layers are the
hierarchical models' neighbourhood-attention layer, every other one dilated.

Parameter names are the release's (``patch_embed``, ``layers.{i}``, ``norm``), so its checkpoints
need no renaming apart from the classifier head.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..ops import BACKENDS
from .base import ReleaseBackbone
from .layers import NATLayer, PatchEmbed


class NATIsotropic(ReleaseBackbone):
    """Isotropic NAT (``dilation=1``) or DiNAT (``dilation > 1``: layers 1, 3, 5, ... dilated).

    The constructor takes the release's arguments unchanged; ``img_size`` is the training
    resolution, recorded only (any input size runs). The OpenMMLab arguments follow.

    Args:
        img_size (int): the release's training resolution. Default 224.
        patch_size (int): patch embedding stride. Default 16.
        in_chans (int): input channels. Default 3.
        embed_dim (int): channels throughout. Default 384.
        depth (int): number of layers. Default 12.
        num_heads (int): attention heads. Default 12.
        mlp_ratio (float): MLP hidden width / channels. Default 4.
        qkv_bias (bool): bias in the qkv projection. Default True.
        qk_scale (float, optional): overrides head_dim ** -0.5.
        kernel_size (int): neighbourhood size, odd >= 3. Default 7.
        dilation (int): dilation of the odd-numbered layers; even ones have 1. Default 2 (DiNAT).
        drop_rate (float): dropout after the embedding, the MLP and the attention projection.
        attn_drop_rate (float): dropout on attention probabilities.
        drop_path_rate (float): stochastic depth, rising linearly over the layers. Default 0.1.
        patch_norm (bool): LayerNorm after the patch embedding. Default True.
        out_indices (Sequence[int]): layers whose outputs are returned (negative counts from the
            end), each through the final LayerNorm ``norm``, as NCHW maps. Default (-1,).
        with_cp (bool): activation checkpointing per layer.
        attn_backend (str): see :func:`dinat_mm.ops.na2d`.
        init_cfg (dict, optional): ``Pretrained`` loads any supported layout (backbone part).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, kernel_size: int = 7, dilation: int = 2,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 patch_norm: bool = True, out_indices: Sequence[int] = (-1, ), with_cp: bool = False,
                 attn_backend: str = 'auto', init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        for name, value, least in (('patch_size', patch_size, 1), ('embed_dim', embed_dim, 1), ('depth', depth, 1),
                                   ('num_heads', num_heads, 1), ('dilation', dilation, 1), ('in_chans', in_chans, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f'{name} must be an int >= {least}, got {value!r}')
        if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be an odd int >= 3, got {kernel_size!r}')
        if embed_dim % num_heads:
            raise ValueError(f'num_heads={num_heads} must divide embed_dim={embed_dim}')
        if attn_backend not in BACKENDS:
            raise ValueError(f'attn_backend must be one of {BACKENDS}, got {attn_backend!r}')
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not out_indices or any(not isinstance(i, int) or not -depth <= i < depth for i in out_indices):
            raise ValueError(f'out_indices must be layer indices in [{-depth}, {depth - 1}], got {out_indices!r}')

        self.img_size, self.in_chans, self.embed_dim, self.depth = img_size, in_chans, embed_dim, depth
        self.kernel_size, self.num_features = kernel_size, [embed_dim]
        self.dilations = [1 if i % 2 == 0 else dilation for i in range(depth)]
        self.out_indices = tuple(sorted(i % depth for i in out_indices))
        self.with_cp = with_cp

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, patch_norm)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()
        self.layers = nn.ModuleList(
            NATLayer(embed_dim, num_heads, kernel_size, self.dilations[i], mlp_ratio, qkv_bias, qk_scale, drop_rate,
                     attn_drop_rate, dpr[i], None, attn_backend) for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f'NATIsotropic expects a 4-D tensor [N, {self.in_chans}, H, W], got '
                             f'{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}')
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, layer in enumerate(self.layers):
            x = self._run(layer, x)
            if i in self.out_indices:
                outs.append(self.norm(x).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
