"""ImageNet classifiers in mmpretrain: the whole classifier (backbone, final norm, head) loads from
every checkpoint layout with the logits of an independent float64 reference; heads that do not
fit, unknown layouts and wrong scopes are refused by name."""
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint

from dinat_mm.checkpoint import CheckpointError, load_into_classifier
from dinat_mm.registry import scope_models
from tests.helpers import classifier_reference as ref
from tests.helpers.models import at_reduced_width, backbone_widths, build_model, check_full_size, train_step_and_predict
from tests.helpers.tools import (CLS_TOY, REPO, load_tool, run_python, run_tool_here, toy_imagenet_options,
                                 train_options)

convert = load_tool('convert_checkpoint')
NUM_CLASSES = 10
# Small models of each family: every level has a dilated or padded case (maps smaller than the window).
SPECS = {
    'DiNAT': dict(family='hierarchical', embed_dim=16, heads=[1, 2, 2, 4], kernel=3, mlp_ratio=2.0, layer_scale=0.5,
                  dilations=[[1, 2], [1, 2], [1, 3], [1]]),
    'NAT': dict(family='hierarchical', embed_dim=16, heads=[1, 2, 2, 4], kernel=5, mlp_ratio=3.0,
                dilations=[[1], [1, 1], [1], [1]]),
    'DiNAT_s': dict(family='swin', embed_dim=16, heads=[1, 2, 2, 4], kernel=3, mlp_ratio=4.0,
                    dilations=[[2], [1], [1, 2], [1]]),
    'NATIsotropic': dict(family='isotropic', embed_dim=24, heads=2, kernel=3, mlp_ratio=2.0, dilations=[1, 2, 1, 2]),
}
IMAGE = torch.randn(2, 3, 45, 61, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def backbone_cfg(kind):
    spec = SPECS[kind]
    if kind == 'NATIsotropic':
        return dict(type=kind, embed_dim=spec['embed_dim'], depth=len(spec['dilations']), num_heads=spec['heads'],
                    kernel_size=spec['kernel'], dilation=2, mlp_ratio=spec['mlp_ratio'], drop_path_rate=0.0), spec['embed_dim']
    cfg = dict(type=kind, embed_dim=spec['embed_dim'], depths=[len(d) for d in spec['dilations']],
               num_heads=spec['heads'], kernel_size=spec['kernel'], mlp_ratio=spec['mlp_ratio'], drop_path_rate=0.0,
               out_indices=(3, ))
    if kind != 'NAT':
        cfg['dilations'] = spec['dilations']
    if spec.get('layer_scale'):
        cfg['layer_scale'] = spec['layer_scale']
    return cfg, spec['embed_dim'] * 8


def classifier(kind, num_classes=NUM_CLASSES):
    backbone, channels = backbone_cfg(kind)
    model = scope_models('mmpretrain').build(dict(
        type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=channels)))
    model.init_weights()
    return model.double().eval()


def logits(model):
    with torch.no_grad():
        return model(IMAGE, mode='tensor')


def save(state, path):
    if str(path).endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)


def layouts(kind, release, tmp):
    out = [('release', save(release, tmp / 'release.pth')),
           ('release under model', save({'model': release}, tmp / 'release_model.pth'))]
    if SPECS[kind]['family'] == 'hierarchical':
        prefix = 'dinat.' if kind == 'DiNAT' else 'nat.'
        out.append(('hugging face', save(ref.huggingface_names(release, prefix), tmp / 'model.safetensors')))
    return out


@pytest.mark.parametrize('kind', list(SPECS))
def test_whole_classifier_from_every_layout_has_the_reference_logits(kind, tmp_path):
    release = ref.random_release_state(SPECS[kind], NUM_CLASSES)
    expected = ref.logits(release, SPECS[kind], IMAGE)
    for name, path in layouts(kind, release, tmp_path):
        model = classifier(kind)
        report = load_into_classifier(model, path)
        assert report['head'] and not report['missing'], (name, report)
        torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-9, msg=f'{kind} from {name}')
        # the converter's --whole output is what load_from / init_cfg read (mmengine's loader)
        whole = tmp_path / f'whole_{name.replace(" ", "_")}.pth'
        convert.main([path, str(whole), '--whole'])
        model = classifier(kind)
        load_checkpoint(model, str(whole), strict=True)
        torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-9, msg=f'{kind}: --whole from {name}')


def test_hugging_face_dinat_model_loads_backbone_and_norm_and_leaves_the_head(tmp_path):
    release = ref.random_release_state(SPECS['DiNAT'], NUM_CLASSES)
    path = save(ref.huggingface_names(release, prefix='', head=False), tmp_path / 'model.safetensors')
    model = classifier('DiNAT')
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_into_classifier(model, path)
    assert not report['head'] and report['missing'] == ['head.fc.bias', 'head.fc.weight']
    expected = ref.logits(dict(release, **{f'head.{k[3:]}': v for k, v in head.items()}), SPECS['DiNAT'], IMAGE)
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-9)


def test_a_head_of_another_class_count_is_refused_with_both_sizes(tmp_path):
    release = ref.random_release_state(SPECS['DiNAT'], num_classes=30)  # a "22K" head for a "1K" model
    path = save(release, tmp_path / 'in22k.pth')
    with pytest.raises(CheckpointError, match=r'in22k\.pth.*head does not fit.*30 classes, the model 10'):
        load_into_classifier(classifier('DiNAT'), path)
    hf = save(ref.huggingface_names(release), tmp_path / 'hf22k.safetensors')
    with pytest.raises(CheckpointError, match=r'hf22k\.safetensors.*head does not fit.*30 classes, the model 10'):
        load_into_classifier(classifier('DiNAT'), hf)


def test_an_unknown_layout_and_another_architecture_are_named(tmp_path):
    path = save({'conv1.weight': torch.zeros(4, 3, 3, 3), 'fc.weight': torch.zeros(10, 4)}, tmp_path / 'resnet.pth')
    with pytest.raises(CheckpointError, match=r'resnet\.pth.*unrecognised checkpoint layout'):
        load_into_classifier(classifier('DiNAT'), path)
    wide = ref.random_release_state(dict(SPECS['DiNAT'], embed_dim=32), NUM_CLASSES)
    with pytest.raises(CheckpointError, match=r'wide\.pth: .* has shape'):
        load_into_classifier(classifier('DiNAT'), save(wide, tmp_path / 'wide.pth'))


# ---- the shipped ImageNet configs ----

CONFIGS = sorted((REPO / 'configs' / 'imagenet').glob('*.py'))


def image_batch(size, n=2, classes=1000):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)],
                data_samples=[DataSample().set_gt_label(int(torch.randint(classes, (1, ), generator=g)))
                              for _ in range(n)])


@pytest.mark.parametrize('config', [pytest.param(c, id=c.stem, marks=[pytest.mark.slow] if 'large' in c.stem else [])
                                    for c in CONFIGS])
def test_every_imagenet_config_has_the_release_size_and_predicts(config):
    """Counted at full size against the release's parameter count; then, narrowed to 8 channels
    per head, it predicts (and the large ones train a step) at the config's test size."""
    cfg = check_full_size(config)
    assert cfg.default_scope == 'mmpretrain' and cfg.model.type == 'ImageClassifier'
    backbone, head = cfg.model.backbone, cfg.model.head
    if backbone.type == 'NATIsotropic':
        full, backbone.embed_dim = backbone.embed_dim, backbone.num_heads * 8
    else:
        full = backbone_widths(backbone)[0][0]
        at_reduced_width(cfg)
    head.in_channels = head.in_channels * backbone.embed_dim // full  # a head that misreads the width fails
    cfg.model.data_preprocessor = cfg.data_preprocessor  # as mmengine's Runner builds it
    model = build_model(cfg.model, 'mmpretrain')
    size = cfg.test_pipeline[-2].crop_size
    data = image_batch(size)
    if 'large' in config.stem:
        _, predictions = train_step_and_predict(model, data)  # the large ones are all hierarchical
    else:
        model.eval()
        with torch.no_grad():
            predictions = model(**model.data_preprocessor(data, False), mode='predict')
    scores = torch.stack([p.pred_score for p in predictions])
    assert scores.shape == (2, 1000) and torch.allclose(scores.sum(1), torch.ones(2), atol=1e-4)


# ---- the tools on classification configs ----

@pytest.fixture(scope='module')
def toy_imagenet(tmp_path_factory):
    from dinat_mm.toydata import make_toy_imagenet
    return make_toy_imagenet(tmp_path_factory.mktemp('data') / 'toy_imagenet', num_train=24, num_val=12, seed=3)


@pytest.mark.slow
def test_toy_run_trains_and_reports_top1_top5_and_the_confusion_matrix(toy_imagenet, tmp_path):
    work = tmp_path / 'work'
    # the one training run in the suite that keeps its validation loop: it runs after the last iteration
    log = run_python('tools/train.py', CLS_TOY, *train_options(work, 2, *toy_imagenet_options(toy_imagenet),
                                                               validate=True)).log
    assert re.search(r'Iter\(val\) \[\d+/\d+\]\s+accuracy/top1: \d+\.\d+', log), log[-2000:]
    out = run_python('tools/test.py', CLS_TOY, work / 'iter_2.pth', '--work-dir', work,
                     '--cfg-options', *toy_imagenet_options(toy_imagenet))
    assert re.search(r'top-1 \d+\.\d %   top-5 \d+\.\d %', out.stdout), out.stdout[-2000:]
    assert re.search(r'6 classes, 12 images', out.stdout) and 'most confused' in out.stdout, out.stdout[-2000:]
    # the release's layout of the same architecture, converted whole by test.py for the config
    cfg = Config.fromfile(str(REPO / CLS_TOY))
    spec = dict(family='hierarchical', embed_dim=64, heads=[2, 4, 8, 16], kernel=7, mlp_ratio=3.0,
                dilations=cfg.model.backbone.dilations)
    release = {k: v.float() for k, v in ref.random_release_state(spec, num_classes=6).items()}
    torch.save(release, tmp_path / 'release_layout.pth')
    out = run_python('tools/test.py', CLS_TOY, tmp_path / 'release_layout.pth', '--work-dir', work,
                     '--cfg-options', *toy_imagenet_options(toy_imagenet))
    assert 'release_layout.pth (native layout, with its head) converted' in out.log and 'top-1' in out.stdout
    assert (work / 'converted' / 'release_layout.pth').is_file()


def test_tools_refuse_bad_classification_input_by_name(toy_imagenet, tmp_path):
    wrong_scope = tmp_path / 'wrong_scope.py'
    wrong_scope.write_text(f"_base_ = ['{REPO / CLS_TOY}']\ndefault_scope = 'mmdet'\n")
    empty = tmp_path / 'empty'
    for split in ('train', 'val'):  # images, but not in class folders
        (empty / split).mkdir(parents=True)
        (empty / split / 'loose.jpg').write_bytes(b'')
    release = ref.random_release_state(dict(family='hierarchical', embed_dim=64, heads=[2, 4, 8, 16], kernel=7,
                                            mlp_ratio=3.0, dilations=[[1] * 3, [1] * 4, [1] * 6, [1] * 5]), 1000)
    torch.save({k: v.float() for k, v in release.items()}, tmp_path / 'in1k_head.pth')
    cases = {
        'scope': (['tools/train.py', wrong_scope],
                  r"model type 'ImageClassifier' is not in mmdet's registry .*it is mmpretrain's"),
        'no classes': (['tools/train.py', CLS_TOY, '--work-dir', tmp_path / 'w', '--cfg-options',
                        *toy_imagenet_options(empty)], r'empty/train: no class folders with images'),
        'head': (['tools/test.py', CLS_TOY, tmp_path / 'in1k_head.pth', '--work-dir', tmp_path / 'w', '--cfg-options',
                  *toy_imagenet_options(toy_imagenet)], r'in1k_head\.pth: the head does not fit: the checkpoint '
                 r'classifies 1000 classes, the model 6'),
        'converter head': (['tools/convert_checkpoint.py', tmp_path / 'in1k_head.pth', tmp_path / 'o.pth', '--whole',
                            '--config', CLS_TOY], r'the checkpoint classifies 1000 classes, the model 6'),
    }
    for name, (args, message) in cases.items():
        run = run_tool_here(*args)
        assert run.code != 0 and re.search(message, run.stderr), (name, run.stderr[-1500:])
        assert 'Traceback' not in run.stderr, (name, run.stderr[-1500:])
    assert not (tmp_path / 'o.pth').exists()
