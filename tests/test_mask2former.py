"""Mask2Former DiNAT-L configs (mmdet 3.x panoptic and instance, mmseg 1.x semantic): each loads,
builds with the release's architecture, runs one training step and predicts, at a reduced image
size and without data (the test checks the model and its losses, not the datasets)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
M2F_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').glob('mask2former_dinat_large_*.py'))
MMDET = {'coco_panoptic': 133, 'coco_instance': 80, 'ade20k_panoptic': 150, 'ade20k_instance': 100,
         'cityscapes_instance': 8}
MMSEG = {'ade20k_semantic': 150, 'cityscapes_semantic': 19}


def task(config):
    return Path(config).stem[len('mask2former_dinat_large_'):]


def test_the_releases_mask2former_tasks_are_shipped():
    assert {task(c) for c in M2F_CONFIGS} == set(MMDET) | set(MMSEG)


def _check_backbone(cfg):
    backbone = cfg.model.backbone
    assert backbone.type == 'DiNAT' and backbone.arch == 'large' and backbone.kernel_size == 11
    assert backbone.dilations == [[1, 14, 1], [1, 4, 1, 7], [1, 2, 1, 3, 1, 2, 1, 3, 1, 2, 1, 3, 1, 2, 1, 3, 1, 3],
                                  [1, 1, 1, 1, 1]]  # mask2former/configs/**/dinat/*.yaml
    assert backbone.drop_path_rate == 0.3 and backbone.init_cfg.checkpoint.endswith('_11x11interp.pth')
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['backbone'] == dict(lr_mult=0.1, decay_mult=1.0)
    assert keys['backbone.levels.2.blocks.17.norm'] == keys['backbone.levels.0.blocks.0.attn.rpb'] == \
        dict(lr_mult=0.1, decay_mult=0.0)
    cfg.model.backbone.init_cfg = None  # no downloads in tests


def _grads_reached(model):
    """The first and the last backbone parameters (drop path may skip any block in between)."""
    first, last = model.backbone.patch_embed.proj[0].weight.grad, model.backbone.norm3.weight.grad
    return first is not None and last is not None and first.abs().sum() > 0 and last.abs().sum() > 0


def _build_train_step_and_predict(cfg, models, data):
    """The model of the config (the release's 220M parameters), one training step that reaches the
    backbone's first and last parameters, and its predictions."""
    torch.manual_seed(0)
    model = models.build(cfg.model)
    model.init_weights()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - 220) < 3, params  # the release's tables: 220M
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    total, _ = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total) and _grads_reached(model)
    model.eval()
    with torch.no_grad():
        return model(**model.data_preprocessor(data, False), mode='predict')


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in M2F_CONFIGS if task(c) in MMDET])
def test_mmdet_mask2former_trains_a_step_and_predicts(config):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.default_scope == 'mmdet' and cfg.model.panoptic_head.num_queries == 200
    _check_backbone(cfg)
    cfg.model.data_preprocessor.batch_augments[0].size = (96, 128)  # the crop, reduced
    head, classes = cfg.model.panoptic_head, MMDET[task(config)]
    assert head.num_things_classes + head.num_stuff_classes == classes and len(head.loss_cls.class_weight) == classes + 1
    data = demo_mm_inputs(batch_size=1, image_shapes=[(3, 96, 128)], num_items=[3], num_classes=classes,
                          with_mask=True, with_semantic=task(config).endswith('panoptic'))
    pred = _build_train_step_and_predict(cfg, MODELS, data)[0]
    if task(config).endswith('panoptic'):
        assert pred.pred_panoptic_seg.sem_seg.shape[-2:] == (96, 128)
    else:
        assert pred.pred_instances.masks.shape[-2:] == (96, 128)


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in M2F_CONFIGS if task(c) in MMSEG])
def test_mmseg_mask2former_trains_a_step_and_predicts(config):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    from test_segmentation import _batch
    register_all_modules()
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.default_scope == 'mmseg' and cfg.model.decode_head.num_queries == 100
    _check_backbone(cfg)
    cfg.model.data_preprocessor.size = (96, 128)
    preds = _build_train_step_and_predict(cfg, MODELS, _batch((96, 128), n=1, classes=MMSEG[task(config)]))
    assert preds[0].pred_sem_seg.data.shape == (1, 96, 128)
