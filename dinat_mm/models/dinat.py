"""DiNAT / NAT / DiNAT_s backbones (Hassani & Shi, arXiv 2209.15001; arXiv 2204.07143) for OpenMMLab 2.x.

Module and parameter names follow the original release (``patch_embed``, ``levels.{i}.blocks.{j}``,
``attn.qkv``, ``attn.rpb``, ``gamma1``, ``levels.{i}.downsample``, ``norm{i}``; DiNAT_s:
``layers.{i}.blocks.{j}``, ``layers.{i}.downsample``), so its checkpoints need no renaming.
The three share the layer, the small-map padding, the OpenMMLab contract and the forward; they
differ in the tokenizer and the downsampler. Checkpoint formats are handled in :mod:`dinat_mm.checkpoint`.
"""
from __future__ import annotations

import copy
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import BACKENDS
from .base import ReleaseBackbone
from .layers import NATLayer, PatchEmbed
from .variants import ARCH_SETTINGS, DINAT_S_ARCH_SETTINGS


class ConvTokenizer(nn.Module):
    """Two 3x3 stride-2 convolutions (embed_dim/2, then embed_dim) and a LayerNorm: stride 4."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1))
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NCHW -> NHWC
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    """3x3 stride-2 convolution without bias to twice the channels, then a LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC -> NHWC
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """DiNAT_s's (Swin's) downsampler: odd sizes zero-padded right/bottom, the four pixels of each
    2x2 block concatenated in the order (0,0), (1,0), (0,1), (1,1), a LayerNorm over the 4C
    channels, a linear map to 2C without bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NHWC -> NHWC
        height, width = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class NATLevel(nn.Module):
    """``depth`` layers at one resolution, then (except for the last level) a downsampler."""

    def __init__(self, blocks: List[NATLayer], downsample: Optional[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


def _check_int_list(name: str, value, length: Optional[int] = None) -> List[int]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f'{name} must be a list of ints, got {value!r}')
    if length is not None and len(value) != length:
        raise ValueError(f'{name} must have {length} entries (one per level), got {len(value)}: {value!r}')
    return list(value)


class DiNAT(ReleaseBackbone):
    """Dilated Neighborhood Attention Transformer backbone.

    Args:
        arch (str, optional): preset, one of 'mini', 'tiny', 'small', 'base', 'large' (the published
            ImageNet variants). Explicit arguments override it. With no arch and no embed_dim /
            depths / num_heads, 'tiny' is used.
        embed_dim (int): channels of the first level; level i has embed_dim * 2**i.
        mlp_ratio (float): MLP hidden width / channels.
        depths (list[int]): layers per level.
        num_heads (list[int]): attention heads per level.
        drop_path_rate (float): stochastic depth, rising linearly over all layers to this value.
        kernel_size (int): neighbourhood size, odd >= 3.
        dilations (list[list[int]], optional): one dilation per layer per level; None: all 1.
        out_indices (Sequence[int]): levels whose outputs are returned, each through its own
            LayerNorm ``norm{i}``. Default (0, 1, 2, 3).
        qkv_bias (bool): bias in the qkv projection. Default True.
        qk_scale (float, optional): overrides head_dim ** -0.5.
        drop_rate (float): dropout after the tokenizer, the MLP and the attention projection.
        attn_drop_rate (float): dropout on attention probabilities.
        in_chans (int): input channels. Default 3.
        in_patch_size (int): stride of the tokenizer; only 4 exists.
        frozen_stages (int): -1 freezes nothing; 0 freezes the tokenizer; n >= 1 also levels
            0..n-1 and their output norms. Frozen parts stay in eval mode.
        layer_scale (float, optional): initial value of the per-channel scales gamma1/gamma2; None
            takes the arch preset's (no layer scale without an arch), 0 turns it off.
        with_cp (bool): activation checkpointing per layer (less memory, more compute).
        attn_backend (str): 'auto', 'torch', 'cpu' or 'natten' (see :func:`dinat_mm.ops.na2d`).
        pretrained (str, optional): deprecated, use init_cfg=dict(type='Pretrained', checkpoint=...).
        init_cfg (dict, optional): initialisation config.
    """

    dilated = True  # NAT: False, every dilation is 1 and others are refused
    arch_settings = ARCH_SETTINGS
    levels_attr = 'levels'  # the release's name of the level list; DiNAT_s: 'layers'

    def _tokenizer(self, in_chans: int, embed_dim: int) -> nn.Module:
        return ConvTokenizer(in_chans, embed_dim)

    def _downsampler(self, dim: int) -> nn.Module:
        return ConvDownsampler(dim)

    @property
    def level_list(self) -> nn.ModuleList:
        return getattr(self, self.levels_attr)

    def __init__(self, arch: Optional[str] = None, embed_dim: Optional[int] = None,
                 mlp_ratio: Optional[float] = None, depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None, drop_path_rate: Optional[float] = None,
                 kernel_size: Optional[int] = None, dilations: Optional[Sequence[Sequence[int]]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3), qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 in_chans: int = 3, in_patch_size: int = 4, frozen_stages: int = -1,
                 layer_scale: Optional[float] = None, with_cp: bool = False,
                 attn_backend: str = 'auto', pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('pretrained and init_cfg cannot both be set; use init_cfg')
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a str (path or URL), got {type(pretrained).__name__}')
            warnings.warn('DeprecationWarning: pretrained is deprecated, use '
                          'init_cfg=dict(type="Pretrained", checkpoint=...)')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=copy.deepcopy(init_cfg))

        given = dict(embed_dim=embed_dim, mlp_ratio=mlp_ratio, depths=depths, num_heads=num_heads,
                     drop_path_rate=drop_path_rate, kernel_size=kernel_size, dilations=dilations,
                     layer_scale=layer_scale)
        if arch is None and embed_dim is None and depths is None and num_heads is None:
            arch = 'tiny'
        if arch is not None:
            if arch not in self.arch_settings:
                raise ValueError(f'arch must be one of {sorted(self.arch_settings)}, got {arch!r}')
            cfg = dict(self.arch_settings[arch])
            if depths is not None and dilations is None:
                cfg['dilations'] = None  # the preset's dilations belong to the preset's depths
        else:
            cfg = dict(mlp_ratio=4.0, drop_path_rate=0.2, kernel_size=7, dilations=None, layer_scale=None)
        cfg.update({k: v for k, v in given.items() if v is not None})
        cfg['layer_scale'] = cfg['layer_scale'] or None  # 0 turns off a preset's layer scale
        if not self.dilated:
            if dilations is not None and any(d != 1 for level in dilations for d in level):
                raise ValueError(f'{type(self).__name__} has no dilations (all are 1); got '
                                 f'dilations={dilations!r}: use DiNAT')
            cfg['dilations'] = None
        for required in ('embed_dim', 'depths', 'num_heads'):
            if cfg.get(required) is None:
                raise TypeError(f'{required} is required when arch is not given')

        depths = _check_int_list('depths', cfg['depths'])
        levels = len(depths)
        num_heads = _check_int_list('num_heads', cfg['num_heads'], levels)
        embed_dim, kernel_size = cfg['embed_dim'], cfg['kernel_size']
        dilations = cfg['dilations'] or [[1] * d for d in depths]
        if not isinstance(dilations, Sequence) or len(dilations) != levels:
            raise ValueError(f'dilations must have {levels} entries (one per level), got {dilations!r}')
        dilations = [_check_int_list(f'dilations[{i}]', dil, depths[i]) for i, dil in enumerate(dilations)]
        if any(d < 1 for level in dilations for d in level):
            raise ValueError(f'every dilation must be >= 1, got {dilations!r}')
        if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be an odd int >= 3, got {kernel_size!r}')
        if not isinstance(embed_dim, int) or embed_dim < 2 or embed_dim % 2:
            raise ValueError(f'embed_dim must be an even int >= 2, got {embed_dim!r}')
        widths = [embed_dim * 2**i for i in range(levels)]
        for i, (width, heads) in enumerate(zip(widths, num_heads)):
            if heads < 1 or width % heads:
                raise ValueError(f'num_heads[{i}]={heads} must divide the level width {width}')
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(_check_int_list('out_indices', out_indices))
        if not out_indices or any(not 0 <= i < levels for i in out_indices):
            raise ValueError(f'out_indices must be in [0, {levels - 1}], got {out_indices!r}')
        if in_patch_size != 4:
            raise ValueError(f'in_patch_size must be 4 (the convolutional tokenizer), got {in_patch_size!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= levels:
            raise ValueError(f'frozen_stages must be an int in [-1, {levels}], got {frozen_stages!r}')
        if attn_backend not in BACKENDS:
            raise ValueError(f'attn_backend must be one of {BACKENDS}, got {attn_backend!r}')

        self.arch, self.in_chans, self.num_features = arch, in_chans, widths
        self.depths, self.num_heads, self.dilations = depths, num_heads, dilations
        self.kernel_size, self.mlp_ratio = kernel_size, cfg['mlp_ratio']
        self.out_indices, self.frozen_stages, self.with_cp = out_indices, frozen_stages, with_cp

        self.patch_embed = self._tokenizer(in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, cfg['drop_path_rate'], sum(depths), device='cpu').tolist()
        self.add_module(self.levels_attr, nn.ModuleList())
        for i in range(levels):
            first = sum(depths[:i])
            blocks = [NATLayer(widths[i], num_heads[i], kernel_size, dilations[i][j], self.mlp_ratio,
                               qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[first + j],
                               cfg['layer_scale'], attn_backend) for j in range(depths[i])]
            self.level_list.append(NATLevel(blocks, self._downsampler(widths[i]) if i < levels - 1 else None))
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(widths[i]))
        self._freeze()

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.patch_embed]
        for i in range(self.frozen_stages):
            modules.append(self.level_list[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _freeze(self):
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'DiNAT':
        super().train(mode)
        self._freeze()
        return self

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f'{type(self).__name__} expects a 4-D tensor [N, {self.in_chans}, H, W], '
                             f'got shape {tuple(x.shape)}')
        if not x.is_floating_point():
            raise TypeError(f'{type(self).__name__} expects a floating-point tensor, got {x.dtype}')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, level in enumerate(self.level_list):
            for layer in level.blocks:
                x = self._run(layer, x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous())
            if level.downsample is not None:
                x = level.downsample(x)
        return tuple(outs)


class NAT(DiNAT):
    """Neighborhood Attention Transformer: DiNAT with every dilation 1."""

    dilated = False


class DiNAT_s(DiNAT):  # noqa: N801  (the release's name, so its configs' backbone dicts work unchanged)
    """DiNAT_s: Swin's layout (a 4x4 patch embedding, Swin's patch merging, mlp_ratio 4, no layer
    scale) with its window attention replaced by NA and its shifted windows by DiNA. Everything
    else (the layer, the small-map padding, out_indices, frozen_stages, with_cp, init_cfg) is
    DiNAT's; the arguments are DiNAT's, plus the release's ``patch_size``, ``patch_norm`` and
    ``pretrain_img_size`` (accepted and unused, as there).
    """

    arch_settings = DINAT_S_ARCH_SETTINGS
    levels_attr = 'layers'

    def __init__(self, *args, patch_size: int = 4, patch_norm: bool = True, pretrain_img_size: int = 224,
                 layer_scale: Optional[float] = None, **kwargs):
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise ValueError(f'patch_size must be an int >= 1, got {patch_size!r}')
        if layer_scale is not None:
            raise ValueError(f'DiNAT_s has no layer scale; got layer_scale={layer_scale!r}')
        if 'in_patch_size' in kwargs:
            raise TypeError('DiNAT_s takes patch_size, not in_patch_size')
        self._patch, self.pretrain_img_size = (patch_size, bool(patch_norm)), pretrain_img_size
        super().__init__(*args, layer_scale=None, **kwargs)

    def _tokenizer(self, in_chans: int, embed_dim: int) -> nn.Module:
        return PatchEmbed(in_chans, embed_dim, *self._patch)

    def _downsampler(self, dim: int) -> nn.Module:
        return PatchMerging(dim)
