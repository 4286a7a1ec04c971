"""Every checkpoint layout loads through init_cfg, pretrained= and the converter with identical
features; rpb tables resize; loading is safe (a pickle that would run code is refused)."""
import os
from pathlib import Path
from unittest import mock

import pytest
import torch

from dinat_mm import DiNAT
from dinat_mm.checkpoint import CheckpointError, load_checkpoint_file, load_into_backbone
from tests.helpers.tools import REPO, load_tool

convert = load_tool('convert_checkpoint')
SMALL = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3, mlp_ratio=2.0,
             dilations=[[1], [2], [1, 3], [1]], drop_path_rate=0.0, layer_scale=0.5)
X = torch.randn(2, 3, 45, 61, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope='module')
def reference():
    """A backbone with random weights everywhere (norms, biases, rpb, gammas) and its features."""
    torch.manual_seed(0)
    model = DiNAT(**SMALL)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def features(model):
    with torch.no_grad():
        return model.eval()(X)


def fresh(**kwargs):
    return DiNAT(**dict(SMALL, **kwargs))


def reference_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---- checkpoint layouts, written here from their published key descriptions ----

def release_classifier(model):
    sd = {k: v for k, v in reference_state(model).items() if not k.startswith('norm')}
    sd['norm.weight'], sd['norm.bias'] = torch.ones(128), torch.zeros(128)
    sd['head.weight'], sd['head.bias'] = torch.randn(1000, 128), torch.zeros(1000)
    return sd


def release_detector(model):
    sd = {'backbone.' + k: v for k, v in reference_state(model).items()}
    sd['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 16, 1, 1)
    return {'meta': {'mmdet_version': '2.19.0', 'CLASSES': ('person',)}, 'state_dict': sd}


def huggingface(model, prefix='dinat.', backbone=False):
    sd, hf = reference_state(model), {}
    hf[prefix + 'embeddings.norm.weight'] = sd['patch_embed.norm.weight']
    hf[prefix + 'embeddings.norm.bias'] = sd['patch_embed.norm.bias']
    for i in (0, 1):
        for t in ('weight', 'bias'):
            hf[f'{prefix}embeddings.patch_embeddings.projection.{i}.{t}'] = sd[f'patch_embed.proj.{i}.{t}']
    for i, depth in enumerate(SMALL['depths']):
        for j in range(depth):
            ours, theirs = f'levels.{i}.blocks.{j}.', f'{prefix}encoder.levels.{i}.layers.{j}.'
            width = 16 * 2**i
            for t in ('weight', 'bias'):
                q, k, v = sd[ours + f'attn.qkv.{t}'].split(width)
                hf[theirs + f'attention.self.query.{t}'] = q
                hf[theirs + f'attention.self.key.{t}'] = k
                hf[theirs + f'attention.self.value.{t}'] = v
                hf[theirs + f'attention.output.dense.{t}'] = sd[ours + f'attn.proj.{t}']
                hf[theirs + f'layernorm_before.{t}'] = sd[ours + f'norm1.{t}']
                hf[theirs + f'layernorm_after.{t}'] = sd[ours + f'norm2.{t}']
                hf[theirs + f'intermediate.dense.{t}'] = sd[ours + f'mlp.fc1.{t}']
                hf[theirs + f'output.dense.{t}'] = sd[ours + f'mlp.fc2.{t}']
            hf[theirs + 'attention.self.rpb'] = sd[ours + 'attn.rpb']
            hf[theirs + 'layer_scale_parameters'] = torch.stack([sd[ours + 'gamma1'], sd[ours + 'gamma2']])
        if i < 3:
            hf[f'{prefix}encoder.levels.{i}.downsample.reduction.weight'] = sd[f'levels.{i}.downsample.reduction.weight']
            for t in ('weight', 'bias'):
                hf[f'{prefix}encoder.levels.{i}.downsample.norm.{t}'] = sd[f'levels.{i}.downsample.norm.{t}']
    if backbone:
        for i in range(4):
            for t in ('weight', 'bias'):
                hf[f'hidden_states_norms.stage{i + 1}.{t}'] = sd[f'norm{i}.{t}']
    else:
        hf[prefix + 'layernorm.weight'], hf[prefix + 'layernorm.bias'] = torch.ones(128), torch.zeros(128)
        hf['classifier.weight'], hf['classifier.bias'] = torch.randn(1000, 128), torch.zeros(1000)
    return hf


def save(obj, path):
    if str(path).endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return str(path)


def layouts(reference, tmp):
    """(name, path, carries output norms)"""
    return [
        ('classifier bare', save(release_classifier(reference), tmp / 'cls.pth'), False),
        ('classifier under model', save({'model': release_classifier(reference)}, tmp / 'cls_model.pth'), False),
        ('classifier under state_dict', save({'state_dict': release_classifier(reference)}, tmp / 'cls_sd.pth'), False),
        ('release detector', save(release_detector(reference), tmp / 'det.pth'), True),
        ('hf classification safetensors', save(huggingface(reference), tmp / 'model.safetensors'), False),
        ('hf classification bin', save(huggingface(reference), tmp / 'pytorch_model.bin'), False),
        ('hf DinatBackbone', save(huggingface(reference, prefix='', backbone=True), tmp / 'backbone.safetensors'), True),
        ('dinat_mm backbone', save(reference_state(reference), tmp / 'ours.pth'), True),
    ]


def expected_features(reference, with_norms):
    if with_norms:
        return features(reference)
    model = fresh()
    model.init_weights()
    model.load_state_dict({k: v for k, v in reference_state(reference).items() if not k.startswith('norm')},
                          strict=False)
    return features(model)


def test_every_layout_loads_through_init_cfg_and_pretrained(reference, tmp_path):
    for name, path, with_norms in layouts(reference, tmp_path):
        want = expected_features(reference, with_norms)
        for model in (fresh(init_cfg=dict(type='Pretrained', checkpoint=path)), fresh(pretrained=path)):
            model.init_weights()
            for a, b in zip(features(model), want):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def test_errors_that_matter_show_far_above_tolerance(reference, tmp_path):
    """The comparison above would catch a swapped q/k order or a transposed rpb."""
    hf = huggingface(reference, prefix='', backbone=True)
    key = 'encoder.levels.0.layers.0.attention.self.'
    hf[key + 'query.weight'], hf[key + 'key.weight'] = hf[key + 'key.weight'], hf[key + 'query.weight']
    hf['encoder.levels.2.layers.1.attention.self.rpb'] = hf['encoder.levels.2.layers.1.attention.self.rpb'].transpose(1, 2)
    model = fresh(init_cfg=dict(type='Pretrained', checkpoint=save(hf, tmp_path / 'bad.safetensors')))
    model.init_weights()
    worst = max((a - b).abs().max().item() for a, b in zip(features(model), features(reference)))
    assert worst > 1e-3


def test_converter_writes_loadable_backbone_checkpoints(reference, tmp_path):
    for name, path, with_norms in layouts(reference, tmp_path):
        for ext in ('.safetensors', '.pth'):
            dst = tmp_path / f'converted_{Path(path).stem}{ext}'
            convert.main([str(path), str(dst)])
            assert set(load_checkpoint_file(dst)) <= set(reference.state_dict())
            model = fresh(init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
            model.init_weights()
            for a, b in zip(features(model), expected_features(reference, with_norms)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f'{name} via {ext}')


def test_summary_is_logged_and_reports_dropped_and_missing(reference, tmp_path):
    path = save(release_classifier(reference), tmp_path / 'cls.pth')
    with mock.patch('dinat_mm.checkpoint.backbone_loading.print_log') as log:
        report = load_into_backbone(fresh(), path)
    message = log.call_args[0][0]
    assert report['layout'] == 'native' and set(report['dropped']) == {'norm.weight', 'norm.bias', 'head.weight', 'head.bias'}
    assert report['missing'] == sorted(f'norm{i}.{t}' for i in range(4) for t in ('bias', 'weight'))
    assert 'dropped: 4' in message and "missing (left initialised): ['norm0.bias'" in message


def test_rpb_of_another_kernel_size_is_resized_bicubically(reference, tmp_path):
    src = fresh(kernel_size=5, dilations=[[1], [1], [1, 1], [1]])
    path = save(reference_state(src), tmp_path / 'k5.pth')
    model = fresh(dilations=[[1], [1], [1, 1], [1]])
    with pytest.warns(UserWarning, match='resized 5 rpb tables'):
        report = load_into_backbone(model, path)
    table = src.levels[2].blocks[1].attn.rpb.detach()
    want = torch.nn.functional.interpolate(table[None], size=(5, 5), mode='bicubic', align_corners=False)[0]
    torch.testing.assert_close(model.levels[2].blocks[1].attn.rpb.detach(), want)
    assert len(report['resized']) == 5


def test_shape_mismatch_names_the_key_and_both_shapes(reference, tmp_path):
    sd = reference_state(reference)
    sd['levels.1.blocks.0.mlp.fc1.weight'] = torch.zeros(10, 32)
    with pytest.raises(CheckpointError, match=r'levels\.1\.blocks\.0\.mlp\.fc1\.weight has shape \(10, 32\) in the '
                                              r'checkpoint and \(64, 32\) in the model'):
        load_into_backbone(fresh(), save(sd, tmp_path / 'bad.pth'))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(reference, tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': reference_state(reference), 'payload': _RunsCode(marker)}, path)
    for load in (lambda: load_checkpoint_file(path),
                 lambda: fresh(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()):
        with pytest.raises(CheckpointError, match=f'{path}: refused.*posix.system'):
            load()
    with pytest.raises(SystemExit, match='refused'):
        convert.main([str(path), str(tmp_path / 'o.pth')])
    assert not (tmp_path / 'o.pth').exists()
    assert not marker.exists()


def test_missing_truncated_and_corrupt_files_are_named(reference, tmp_path):
    good = save(reference_state(reference), tmp_path / 'good.pth')
    (tmp_path / 'trunc.pth').write_bytes(Path(good).read_bytes()[:5000])
    (tmp_path / 'junk.safetensors').write_bytes(b'\x00' * 100)
    for name, words in (('nothing.pth', 'checkpoint not found'), ('trunc.pth', 'truncated or corrupt'),
                        ('junk.safetensors', 'not a readable safetensors file')):
        with pytest.raises(CheckpointError, match=f'{tmp_path / name}: {words}|{words}: {tmp_path / name}'):
            load_checkpoint_file(tmp_path / name)


@pytest.mark.slow
def test_whole_detector_conversion_loads_without_missing_keys(tmp_path):
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm

    from dinat_mm.registry import scope_models
    for config in ('maskrcnn_dinat_mini_coco.py', 'cascade_maskrcnn_dinat_mini_coco.py'):
        cfg = Config.fromfile(str(REPO / 'configs' / config))
        cfg.model.backbone.init_cfg = None
        model = revert_sync_batchnorm(scope_models('mmdet').build(cfg.model))
        release = {'meta': {'CLASSES': ('person',)}, 'state_dict': dict(model.state_dict()),
                   'optimizer': {'state': {}, 'param_groups': []}}
        src = save(release, tmp_path / 'release.pth')
        dst = tmp_path / 'converted.pth'
        convert.main(['--whole', str(src), str(dst)])
        converted = load_checkpoint_file(dst)
        assert set(converted) == {'state_dict', 'meta'}
        result = model.load_state_dict(converted['state_dict'], strict=True)
        assert not result.missing_keys and not result.unexpected_keys


# ---- DiNAT_s and Mask2Former layouts, their key lists written from the release's code ----

S_CFG = dict(embed_dim=16, depths=[2, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3, dilations=[[1, 2], [1], [1, 2], [1]],
             drop_path_rate=0.0)


def dinat_s_release_keys(embed_dim, depths, heads, kernel, mlp_ratio=4):
    """detection/dinats.py and classification/dinats.py: Swin's PatchEmbed (proj, norm), BasicLayer
    'layers.{i}' of NATransformerLayer 'blocks.{j}' (norm1, natten's attn.qkv/rpb/proj, norm2,
    mlp.fc1/fc2), Swin's PatchMerging 'downsample' (reduction without bias, norm over 4C)."""
    shapes = {'patch_embed.proj.weight': (embed_dim, 3, 4, 4), 'patch_embed.proj.bias': (embed_dim,),
              'patch_embed.norm.weight': (embed_dim,), 'patch_embed.norm.bias': (embed_dim,)}
    for i, depth in enumerate(depths):
        dim = embed_dim * 2 ** i
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            shapes.update({p + 'norm1.weight': (dim,), p + 'norm1.bias': (dim,),
                           p + 'attn.rpb': (heads[i], 2 * kernel - 1, 2 * kernel - 1),
                           p + 'attn.qkv.weight': (3 * dim, dim), p + 'attn.qkv.bias': (3 * dim,),
                           p + 'attn.proj.weight': (dim, dim), p + 'attn.proj.bias': (dim,),
                           p + 'norm2.weight': (dim,), p + 'norm2.bias': (dim,),
                           p + 'mlp.fc1.weight': (mlp_ratio * dim, dim), p + 'mlp.fc1.bias': (mlp_ratio * dim,),
                           p + 'mlp.fc2.weight': (dim, mlp_ratio * dim), p + 'mlp.fc2.bias': (dim,)})
        if i < len(depths) - 1:
            shapes.update({f'layers.{i}.downsample.reduction.weight': (2 * dim, 4 * dim),
                           f'layers.{i}.downsample.norm.weight': (4 * dim,),
                           f'layers.{i}.downsample.norm.bias': (4 * dim,)})
    g = torch.Generator().manual_seed(7)
    return {k: torch.randn(s, generator=g) * 0.1 for k, s in shapes.items()}


def test_dinat_s_release_classifier_and_detector_checkpoints_load(tmp_path):
    from dinat_mm import DiNAT_s
    last = S_CFG['embed_dim'] * 8
    backbone = dinat_s_release_keys(S_CFG['embed_dim'], S_CFG['depths'], S_CFG['num_heads'], S_CFG['kernel_size'])
    classifier = dict(backbone, **{'norm.weight': torch.ones(last), 'norm.bias': torch.zeros(last),
                                   'head.weight': torch.zeros(1000, last), 'head.bias': torch.zeros(1000)})
    norms = {f'norm{i}.{t}': torch.full((S_CFG['embed_dim'] * 2 ** i,), 0.5 + i) for i in range(4) for t in ('weight', 'bias')}
    detector = {'state_dict': {**{'backbone.' + k: v for k, v in {**backbone, **norms}.items()},
                               'neck.fpn_convs.0.conv.weight': torch.zeros(256, 256, 3, 3)},
                'meta': {'mmdet_version': '2.25.0'}}
    for name, checkpoint, want_dropped, want_missing in (
            ('classifier', classifier, {'norm.weight', 'norm.bias', 'head.weight', 'head.bias'}, set(norms)),
            ('detector', detector, {'neck.fpn_convs.0.conv.weight'}, set())):
        path = tmp_path / f'{name}.pth'
        torch.save(checkpoint, path)
        model = DiNAT_s(**S_CFG, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        with mock.patch('dinat_mm.checkpoint.backbone_loading.print_log') as log:
            model.init_weights()
        message = log.call_args[0][0]
        assert message.startswith(f'DiNAT_s: loaded {len(backbone) + len(norms) - len(want_missing)}/'
                                  f'{len(backbone) + len(norms)} tensors from {path}')
        assert f'dropped: {len(want_dropped)}' in message
        state = model.state_dict()
        for key, value in backbone.items():
            assert torch.equal(state[key], value), (name, key)
        if name == 'detector':
            assert all(torch.equal(state[k], v) for k, v in norms.items())


@pytest.mark.slow
def test_detectron2_mask2former_checkpoint_backbone_loads_into_dinat_large(tmp_path):
    """mask2former/dinat.py's D2DiNAT is DiNAT (levels, norm{i}) under 'backbone.'; the training
    checkpoints hold {'model': ..., 'iteration': ...}; the head (sem_seg_head.*) is dropped."""
    with torch.device('meta'):
        shapes = {k: v.shape for k, v in DiNAT(arch='large', kernel_size=11).state_dict().items()}
    g = torch.Generator().manual_seed(5)
    backbone = {k: torch.randn(s, generator=g) for k, s in shapes.items() if k.startswith(('levels.3', 'norm3'))}
    backbone.update({k: torch.zeros(s) for k, s in shapes.items() if k not in backbone})
    model_state = {'backbone.' + k: v for k, v in backbone.items()}
    model_state['sem_seg_head.predictor.query_feat.weight'] = torch.zeros(200, 256)
    model_state['sem_seg_head.pixel_decoder.input_proj.0.0.weight'] = torch.zeros(256, 1536, 1, 1)
    path = tmp_path / 'mask2former_dinat_large_coco_panoptic.pth'
    torch.save({'model': model_state, 'iteration': 737499}, path)
    model = DiNAT(arch='large', kernel_size=11, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    report = load_into_backbone(model, str(path))
    assert report['layout'] == 'detector' and not report['missing'] and not report['resized']
    assert set(report['dropped']) == {'sem_seg_head.predictor.query_feat.weight',
                                      'sem_seg_head.pixel_decoder.input_proj.0.0.weight'}
    state = model.state_dict()
    assert all(torch.equal(state[k], backbone[k]) for k in ('levels.3.blocks.4.attn.rpb', 'norm3.weight'))
