"""The published DiNAT and DiNAT_s variants (arXiv 2209.15001, SHI-Labs/Neighborhood-Attention-Transformer),
as data. Dilations here are the ImageNet-224 ones; detection and segmentation configs pass their
own larger dilations explicitly."""
from typing import Any, Dict, List


def _alternate(depth: int, dilation: int) -> List[int]:
    """[1, d, 1, d, ...]: DiNAT alternates local (1) and sparse-global (d) layers."""
    return [1 if i % 2 == 0 else dilation for i in range(depth)]


def _imagenet_dilations(depths: List[int]) -> List[List[int]]:
    # 224x224 input: levels are 56, 28, 14, 7 wide; k=7 gives dilations 8, 4, 2, 1.
    return [_alternate(depth, 56 // 7 // 2**i) for i, depth in enumerate(depths)]


ARCH_SETTINGS: Dict[str, Dict[str, Any]] = {
    'mini': dict(embed_dim=64, depths=[3, 4, 6, 5], num_heads=[2, 4, 8, 16], mlp_ratio=3.0,
                 drop_path_rate=0.2, layer_scale=None),
    'tiny': dict(embed_dim=64, depths=[3, 4, 18, 5], num_heads=[2, 4, 8, 16], mlp_ratio=3.0,
                 drop_path_rate=0.2, layer_scale=None),
    'small': dict(embed_dim=96, depths=[3, 4, 18, 5], num_heads=[3, 6, 12, 24], mlp_ratio=2.0,
                  drop_path_rate=0.3, layer_scale=None),
    'base': dict(embed_dim=128, depths=[3, 4, 18, 5], num_heads=[4, 8, 16, 32], mlp_ratio=2.0,
                 drop_path_rate=0.5, layer_scale=1e-5),
    'large': dict(embed_dim=192, depths=[3, 4, 18, 5], num_heads=[6, 12, 24, 48], mlp_ratio=2.0,
                  drop_path_rate=0.35, layer_scale=None),
}
for _setting in ARCH_SETTINGS.values():
    _setting.update(kernel_size=7, dilations=_imagenet_dilations(_setting['depths']))

# DiNAT_s (Swin's layout: depths 2-2-x-2, mlp_ratio 4, no layer scale), from the release's classifiers
DINAT_S_ARCH_SETTINGS: Dict[str, Dict[str, Any]] = {
    'tiny': dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.2),
    'small': dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.3),
    'base': dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], drop_path_rate=0.5),
    'large': dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], drop_path_rate=0.35),
}
for _setting in DINAT_S_ARCH_SETTINGS.values():
    _setting.update(mlp_ratio=4.0, layer_scale=None, kernel_size=7, dilations=_imagenet_dilations(_setting['depths']))
