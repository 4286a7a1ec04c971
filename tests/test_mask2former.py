"""Mask2Former DiNAT-L configs (mmdet 3.x panoptic and instance, mmseg 1.x semantic): each loads,
builds with the release's architecture, runs one training step and predicts, at a reduced image
size and without data (the test checks the model and its losses, not the datasets)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tests.helpers.models import at_reduced_width, build_model, check_full_size, seg_batch, train_step_and_predict
from tests.helpers.tools import REPO, run_tool_here

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


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in M2F_CONFIGS if task(c) in MMDET])
def test_mmdet_mask2former_has_the_releases_size_and_trains_a_step_at_reduced_width(config):
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.default_scope == 'mmdet' and cfg.model.panoptic_head.num_queries == 200
    _check_backbone(cfg)
    cfg.model.data_preprocessor.batch_augments[0].size = (96, 128)  # the crop, reduced
    head, classes = cfg.model.panoptic_head, MMDET[task(config)]
    assert head.num_things_classes + head.num_stuff_classes == classes and len(head.loss_cls.class_weight) == classes + 1
    data = demo_mm_inputs(batch_size=1, image_shapes=[(3, 96, 128)], num_items=[3], num_classes=classes,
                          with_mask=True, with_semantic=task(config).endswith('panoptic'))
    check_full_size(config, cfg)
    pred = train_step_and_predict(build_model(at_reduced_width(cfg).model, 'mmdet'), data)[1][0]
    if task(config).endswith('panoptic'):
        assert pred.pred_panoptic_seg.sem_seg.shape[-2:] == (96, 128)
    else:
        assert pred.pred_instances.masks.shape[-2:] == (96, 128)


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in M2F_CONFIGS if task(c) in MMSEG])
def test_mmseg_mask2former_has_the_releases_size_and_trains_a_step_at_reduced_width(config):
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.default_scope == 'mmseg' and cfg.model.decode_head.num_queries == 100
    _check_backbone(cfg)
    cfg.model.data_preprocessor.size = (96, 128)
    check_full_size(config, cfg)
    model = build_model(at_reduced_width(cfg).model, 'mmseg')
    _, preds = train_step_and_predict(model, seg_batch((96, 128), n=1, classes=MMSEG[task(config)]))
    assert preds[0].pred_sem_seg.data.shape == (1, 96, 128)


def _detectron2_state(num_classes, queries, generator):
    """A detectron2 Mask2Former DiNAT-L state dict, its names and shapes read off the release's
    detectron2 modules: D2DiNAT under backbone.; MSDeformAttnPixelDecoder (input_proj res5 first as
    Conv2d+GroupNorm Sequentials, transformer.level_embed, 6 encoder layers self_attn/norm1/linear1/
    linear2/norm2, the res2 FPN level as adapter_1/layer_1 with .norm, mask_features);
    MultiScaleMaskedTransformerDecoder (9 layers, each transformer_{self,cross}_attention_layers
    (self_attn / multihead_attn + norm) and transformer_ffn_layers (linear1, linear2, norm),
    decoder_norm, query_feat, query_embed, level_embed, class_embed, mask_embed MLP layers.0-2);
    SetCriterion's empty_weight. Head tensors random, backbone zeros apart from two."""
    from dinat_mm import DiNAT
    with torch.device('meta'):
        backbone = {'backbone.' + k: v.shape for k, v in DiNAT(arch='large', kernel_size=11).state_dict().items()}
    shapes, pd, td = {}, 'sem_seg_head.pixel_decoder.', 'sem_seg_head.predictor.'
    vec = (256,)

    def linear(prefix, out, inp):
        shapes.update({prefix + 'weight': (out, inp), prefix + 'bias': (out,)})

    def norm(prefix):
        shapes.update({prefix + 'weight': vec, prefix + 'bias': vec})

    for i, channels in enumerate((1536, 768, 384)):
        shapes.update({f'{pd}input_proj.{i}.0.weight': (256, channels, 1, 1), f'{pd}input_proj.{i}.0.bias': vec})
        norm(f'{pd}input_proj.{i}.1.')
    shapes[f'{pd}transformer.level_embed'] = (3, 256)
    for i in range(6):
        layer = f'{pd}transformer.encoder.layers.{i}.'
        linear(layer + 'self_attn.sampling_offsets.', 8 * 3 * 4 * 2, 256)
        linear(layer + 'self_attn.attention_weights.', 8 * 3 * 4, 256)
        linear(layer + 'self_attn.value_proj.', 256, 256)
        linear(layer + 'self_attn.output_proj.', 256, 256)
        linear(layer + 'linear1.', 1024, 256)
        linear(layer + 'linear2.', 256, 1024)
        norm(layer + 'norm1.')
        norm(layer + 'norm2.')
    shapes.update({f'{pd}adapter_1.weight': (256, 192, 1, 1), f'{pd}layer_1.weight': (256, 256, 3, 3),
                   f'{pd}mask_features.weight': (256, 256, 1, 1), f'{pd}mask_features.bias': vec})
    norm(f'{pd}adapter_1.norm.')
    norm(f'{pd}layer_1.norm.')
    for i in range(9):
        for part, attn in (('self', 'self_attn'), ('cross', 'multihead_attn')):
            layer = f'{td}transformer_{part}_attention_layers.{i}.'
            shapes.update({f'{layer}{attn}.in_proj_weight': (768, 256), f'{layer}{attn}.in_proj_bias': (768,)})
            linear(f'{layer}{attn}.out_proj.', 256, 256)
            norm(layer + 'norm.')
        linear(f'{td}transformer_ffn_layers.{i}.linear1.', 2048, 256)
        linear(f'{td}transformer_ffn_layers.{i}.linear2.', 256, 2048)
        norm(f'{td}transformer_ffn_layers.{i}.norm.')
    norm(f'{td}decoder_norm.')
    shapes.update({f'{td}query_feat.weight': (queries, 256), f'{td}query_embed.weight': (queries, 256),
                   f'{td}level_embed.weight': (3, 256), 'criterion.empty_weight': (num_classes + 1,)})
    linear(f'{td}class_embed.', num_classes + 1, 256)
    for i in range(3):
        linear(f'{td}mask_embed.layers.{i}.', 256, 256)
    state = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    state.update({k: torch.zeros(s) for k, s in backbone.items()})
    state['backbone.levels.3.blocks.4.attn.rpb'] = torch.randn(backbone['backbone.levels.3.blocks.4.attn.rpb'],
                                                               generator=generator)
    state['backbone.norm3.weight'] = torch.randn(1536, generator=generator)
    return state


# Which detectron2 tensor each mmdet/mmseg tensor is, for every kind of module (written from the two
# implementations' forward passes, not from the converter): {mm suffix after the head: d2 key}.
_SAME = {
    'pixel_decoder.input_convs.0.conv.weight': 'sem_seg_head.pixel_decoder.input_proj.0.0.weight',
    'pixel_decoder.input_convs.2.gn.bias': 'sem_seg_head.pixel_decoder.input_proj.2.1.bias',
    'pixel_decoder.level_encoding.weight': 'sem_seg_head.pixel_decoder.transformer.level_embed',
    'pixel_decoder.encoder.layers.5.self_attn.sampling_offsets.weight':
        'sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight',
    'pixel_decoder.encoder.layers.5.norms.0.weight': 'sem_seg_head.pixel_decoder.transformer.encoder.layers.5.norm1.weight',
    'pixel_decoder.encoder.layers.5.norms.1.bias': 'sem_seg_head.pixel_decoder.transformer.encoder.layers.5.norm2.bias',
    'pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight': 'sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight',
    'pixel_decoder.encoder.layers.0.ffn.layers.1.bias': 'sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear2.bias',
    'pixel_decoder.lateral_convs.0.gn.weight': 'sem_seg_head.pixel_decoder.adapter_1.norm.weight',
    'pixel_decoder.output_convs.0.conv.weight': 'sem_seg_head.pixel_decoder.layer_1.weight',
    'pixel_decoder.mask_feature.bias': 'sem_seg_head.pixel_decoder.mask_features.bias',
    'transformer_decoder.layers.8.cross_attn.attn.in_proj_weight':
        'sem_seg_head.predictor.transformer_cross_attention_layers.8.multihead_attn.in_proj_weight',
    'transformer_decoder.layers.8.self_attn.attn.out_proj.bias':
        'sem_seg_head.predictor.transformer_self_attention_layers.8.self_attn.out_proj.bias',
    'transformer_decoder.layers.8.norms.0.weight': 'sem_seg_head.predictor.transformer_cross_attention_layers.8.norm.weight',
    'transformer_decoder.layers.8.norms.1.weight': 'sem_seg_head.predictor.transformer_self_attention_layers.8.norm.weight',
    'transformer_decoder.layers.8.norms.2.weight': 'sem_seg_head.predictor.transformer_ffn_layers.8.norm.weight',
    'transformer_decoder.layers.3.ffn.layers.1.weight': 'sem_seg_head.predictor.transformer_ffn_layers.3.linear2.weight',
    'transformer_decoder.post_norm.bias': 'sem_seg_head.predictor.decoder_norm.bias',
    'query_feat.weight': 'sem_seg_head.predictor.query_feat.weight',
    'query_embed.weight': 'sem_seg_head.predictor.query_embed.weight',
    'level_embed.weight': 'sem_seg_head.predictor.level_embed.weight',
    'mask_embed.2.weight': 'sem_seg_head.predictor.mask_embed.layers.1.weight',
    'mask_embed.4.bias': 'sem_seg_head.predictor.mask_embed.layers.2.bias',
}
# detectron2's ADE20K panoptic ids (register_ade20k_panoptic.py, ADE20K_150_CATEGORIES) of some classes.
_ADE_IDS = {'wall': 0, 'sky': 2, 'bed': 7, 'person': 12, 'car': 20, 'grass': 9, 'clock': 148, 'flag': 149}


def _convert(tmp_path, state, config):
    src, dst = tmp_path / 'd2.pth', tmp_path / 'mm.pth'
    torch.save({'model': state, 'iteration': 1}, src)
    return run_tool_here('tools/convert_checkpoint.py', src, dst, '--whole', '--config', config), dst


@pytest.mark.slow
@pytest.mark.parametrize('name, classes, queries', [('coco_panoptic', 133, 200), ('ade20k_panoptic', 150, 200),
                                                    ('ade20k_semantic', 150, 100)])
def test_detectron2_mask2former_checkpoint_converts_to_the_config_model(tmp_path, name, classes, queries):
    from dinat_mm.registry import scope_models
    config = f'configs/mask2former_dinat_large_{name}.py'
    state = _detectron2_state(classes, queries, torch.Generator().manual_seed(1))
    out, dst = _convert(tmp_path, state, config)
    assert out.code == 0, out.stderr
    converted = torch.load(dst, weights_only=True)['state_dict']
    cfg = Config.fromfile(REPO / config)
    cfg.model.backbone.init_cfg = None
    head = 'decode_head' if name in MMSEG else 'panoptic_head'
    with torch.device('meta'):
        model = scope_models(cfg.default_scope).build(cfg.model)
    model.load_state_dict(converted, strict=True, assign=True)  # every key, every shape
    for mm, d2 in _SAME.items():
        assert torch.equal(converted[f'{head}.{mm}'], state[d2]), mm
    for key in ('backbone.levels.3.blocks.4.attn.rpb', 'backbone.norm3.weight'):
        assert torch.equal(converted[key], state[key])
    rows, d2_rows = converted[f'{head}.cls_embed.weight'], state['sem_seg_head.predictor.class_embed.weight']
    assert torch.equal(rows[-1], d2_rows[-1])  # no-object last in both
    if name == 'ade20k_panoptic':
        from mmdet.datasets import ADE20KPanopticDataset
        names = ADE20KPanopticDataset.METAINFO['classes']
        for cls, d2_id in _ADE_IDS.items():
            assert torch.equal(rows[names.index(cls)], d2_rows[d2_id]), cls
        assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, d2_rows.tolist()))
    else:
        assert torch.equal(rows, d2_rows)


@pytest.mark.slow
def test_detectron2_mask2former_conversion_refuses_a_missing_or_wrong_config(tmp_path):
    state = _detectron2_state(133, 200, torch.Generator().manual_seed(2))
    src = tmp_path / 'd2.pth'
    torch.save({'model': state}, src)
    out = run_tool_here('tools/convert_checkpoint.py', src, tmp_path / 'a.pth', '--whole')
    assert out.code != 0 and 'is a detectron2 Mask2Former checkpoint: give --config' in out.stderr
    out, dst = _convert(tmp_path, state, 'configs/maskrcnn_dinat_tiny_coco.py')
    assert out.code != 0 and 'configs/maskrcnn_dinat_tiny_coco.py is not an mmdet/mmseg Mask2Former config' in out.stderr
    out, dst = _convert(tmp_path, state, 'configs/mask2former_dinat_large_ade20k_semantic.py')  # 133 classes vs 150
    assert out.code != 0 and 'does not fit configs/mask2former_dinat_large_ade20k_semantic.py' in out.stderr
    assert 'cls_embed.weight (134, 256) vs (151, 256)' in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d2.pth']  # nothing written, not even in part


@pytest.mark.parametrize('config', M2F_CONFIGS)
def test_datasets_name_only_what_they_read_and_test_on_val(config):
    """tools/train.py checks every path a config names, so an instance config must not keep the
    panoptic folders of mmdet's base config; and test runs on the val split."""
    cfg = Config.fromfile(REPO / config)
    sets = [cfg[loader].dataset for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if 'instance' in task(config):
        assert all(set(d.data_prefix) == {'img'} for d in sets), [d.data_prefix for d in sets]
    for key in ('type', 'data_root', 'ann_file', 'data_prefix', 'pipeline'):
        assert sets[1].get(key) == sets[2].get(key), key
