"""A config's model: built as the tools build it, counted at full size on the meta device, and
trained a step and run for predictions at reduced width."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from mmengine.config import Config, ConfigDict

BACKBONE_TYPES = {'dinat': 'DiNAT', 'nat': 'NAT', 'dinat_s': 'DiNAT_s'}

# The release's parameter counts (millions, as its tables round them) of each shipped config:
# DiNAT, NAT and DiNAT_s detection/segmentation READMEs and Mask2Former's model zoo.
RELEASE_PARAMS_M = {
    'maskrcnn_dinat_mini_coco': 40, 'maskrcnn_dinat_tiny_coco': 48, 'maskrcnn_dinat_small_coco': 70,
    'cascade_maskrcnn_dinat_mini_coco': 77, 'cascade_maskrcnn_dinat_tiny_coco': 85,
    'cascade_maskrcnn_dinat_small_coco': 108, 'cascade_maskrcnn_dinat_base_coco': 147,
    'cascade_maskrcnn_dinat_large_coco': 258,
    'maskrcnn_nat_mini_coco': 40, 'maskrcnn_nat_tiny_coco': 48, 'maskrcnn_nat_small_coco': 70,
    'cascade_maskrcnn_nat_mini_coco': 77, 'cascade_maskrcnn_nat_tiny_coco': 85,
    'cascade_maskrcnn_nat_small_coco': 108, 'cascade_maskrcnn_nat_base_coco': 147,
    'maskrcnn_dinat_s_tiny_coco': 48, 'maskrcnn_dinat_s_small_coco': 69,
    'cascade_maskrcnn_dinat_s_tiny_coco': 86, 'cascade_maskrcnn_dinat_s_small_coco': 107,
    'cascade_maskrcnn_dinat_s_base_coco': 145, 'cascade_maskrcnn_dinat_s_large_coco': 253,
    'upernet_dinat_mini_ade20k': 50, 'upernet_dinat_tiny_ade20k': 58, 'upernet_dinat_small_ade20k': 82,
    'upernet_dinat_base_ade20k': 123, 'upernet_dinat_large_ade20k': 238,
    'upernet_nat_mini_ade20k': 50, 'upernet_nat_tiny_ade20k': 58, 'upernet_nat_small_ade20k': 82,
    'upernet_nat_base_ade20k': 123,
    'upernet_dinat_s_tiny_ade20k': 60, 'upernet_dinat_s_small_ade20k': 81, 'upernet_dinat_s_base_ade20k': 121,
    'upernet_dinat_s_large_ade20k': 234,
    **{f'mask2former_dinat_large_{task}': 220 for task in (
        'coco_panoptic', 'coco_instance', 'ade20k_panoptic', 'ade20k_instance', 'cityscapes_instance',
        'ade20k_semantic', 'cityscapes_semantic')},
    # the ImageNet classifiers (classification/DiNAT.md and NAT.md of the release)
    'dinat_mini_in1k_224': 20, 'dinat_tiny_in1k_224': 28, 'dinat_small_in1k_224': 51, 'dinat_base_in1k_224': 90,
    'dinat_large_in22k_in1k_224': 200, 'dinat_large_in22k_in1k_384': 200, 'dinat_large_in22k_in1k_384_11x11': 200,
    'nat_mini_in1k_224': 20, 'nat_tiny_in1k_224': 28, 'nat_small_in1k_224': 51, 'nat_base_in1k_224': 90,
    'dinat_s_tiny_in1k_224': 28, 'dinat_s_small_in1k_224': 50, 'dinat_s_base_in1k_224': 88,
    'dinat_s_large_in22k_in1k_224': 197, 'dinat_s_large_in22k_in1k_384': 197,
    'nat_isotropic_small_in1k_224': 22, 'dinat_isotropic_small_in1k_224': 22,
    'nat_isotropic_base_in1k_224': 86, 'dinat_isotropic_base_in1k_224': 86,
}


def family(config: str) -> str:
    return Path(config).name.split('maskrcnn_')[-1].split('upernet_')[-1].rsplit('_', 2)[0]


def build_model(model_cfg, scope: str, seed: int = 0) -> torch.nn.Module:
    """The model as the tools build it (SyncBN as BN: no process group here), initialised."""
    from mmengine.model import revert_sync_batchnorm

    from dinat_mm.registry import scope_models
    torch.manual_seed(seed)
    model = revert_sync_batchnorm(scope_models(scope).build(model_cfg))
    model.init_weights()
    return model


def full_size_params(cfg: Config) -> int:
    """Parameters of the config's model, built on the meta device (no memory, no time)."""
    from dinat_mm.registry import scope_models
    with torch.device('meta'):
        model = scope_models(cfg.default_scope).build(cfg.model)
    return sum(p.numel() for p in model.parameters())


def backbone_widths(backbone: ConfigDict) -> tuple:
    """(widths, num_heads) of a DiNAT/NAT/DiNAT_s backbone config, its arch preset filled in."""
    from dinat_mm.models import ARCH_SETTINGS, DINAT_S_ARCH_SETTINGS
    preset = (DINAT_S_ARCH_SETTINGS if backbone.type == 'DiNAT_s' else ARCH_SETTINGS).get(backbone.get('arch'), {})
    embed_dim = backbone.get('embed_dim') or preset['embed_dim']
    heads = list(backbone.get('num_heads') or preset['num_heads'])
    return [embed_dim * 2**i for i in range(len(heads))], heads


def at_reduced_width(cfg: Config, head_dim: int = 8) -> Config:
    """The config with its backbone narrowed to ``head_dim`` channels per head (the same heads,
    depths, kernel size and dilations) and every ``in_channels`` that reads the backbone's levels
    narrowed with it, so that a training step takes seconds. The heads keep their own widths."""
    widths, heads = backbone_widths(cfg.model.backbone)
    narrow = [heads[0] * head_dim * 2**i for i in range(len(heads))]
    cfg.model.backbone.embed_dim = narrow[0]
    for name in ('neck', 'decode_head', 'panoptic_head'):
        part = cfg.model.get(name)
        if part is not None and list(part.get('in_channels', [])) == widths:
            part.in_channels = narrow
    auxiliary = cfg.model.get('auxiliary_head')
    if auxiliary is not None:
        auxiliary.in_channels = narrow[widths.index(auxiliary.in_channels)]
    return cfg


def with_few_rois(cfg: Config, rois: int = 32) -> Config:
    """A two-stage detector config that proposes and samples ``rois`` regions per image instead of
    hundreds: its heads' work (the cascades' 4conv-1fc box heads above all) then fits a unit test."""
    train, test = cfg.model.train_cfg, cfg.model.test_cfg
    train.rpn_proposal.max_per_img = test.rpn.max_per_img = rois
    for stage in (train.rcnn if isinstance(train.rcnn, list) else [train.rcnn]):
        stage.sampler.num = rois
    return cfg


def grads_reached_backbone(model) -> bool:
    """The tokenizer's first parameter and the last output norm got gradients (drop path may skip
    any block in between)."""
    backbone = model.backbone
    first = next(backbone.patch_embed.parameters()).grad
    last = getattr(backbone, f'norm{backbone.out_indices[-1]}').weight.grad
    return first is not None and last is not None and bool(first.abs().sum() > 0) and bool(last.abs().sum() > 0)


def train_step_and_predict(model, data: dict, reached: Callable = grads_reached_backbone):
    """One training step (loss, backward) that must reach the backbone, then predictions in eval
    mode. Returns (losses, predictions)."""
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    total, _ = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total), losses
    assert reached(model), 'the loss did not reach the backbone'
    model.eval()
    with torch.no_grad():
        return losses, model(**model.data_preprocessor(data, False), mode='predict')


def seg_batch(size, n: int = 2, classes: int = 150, seed: int = 0) -> dict:
    """A segmentation batch of random images and label maps, as mmseg's data loaders give it."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8))
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, classes, (1, *size), generator=g)))
        sample.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size, padding_size=[0, 0, 0, 0]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def check_full_size(config_path: str, cfg: Optional[Config] = None) -> Config:
    """The config's full-size model, counted on the meta device, has the release's parameter count
    (a backbone width that its neck or heads do not read would change it). Returns the config with
    no ImageNet checkpoint to download."""
    cfg = cfg or Config.fromfile(str(config_path))
    cfg.model.backbone.init_cfg = None  # no downloads in tests
    params = full_size_params(cfg)
    release = RELEASE_PARAMS_M[Path(config_path).stem]
    # the release rounds to whole millions, and DiNAT-L's 200.9 M (201.1 M with 11x11 tables) to 200 M
    tolerance = max(0.6, 0.006 * release)
    assert abs(params / 1e6 - release) <= tolerance, f'{config_path}: {params / 1e6:.1f} M, the release has {release} M'
    return cfg
