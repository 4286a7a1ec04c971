"""Detection configs and tools: every shipped config builds offline and trains a step; the tools
train, resume exactly, run distributed on CPU (gloo) and evaluate with CocoMetric."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from dinat_mm.checkpoint import load_checkpoint_file
from tests.helpers.tools import DET_TOY as TOY
from tests.helpers.models import (BACKBONE_TYPES, at_reduced_width, build_model, check_full_size, family,
                                   train_step_and_predict, with_few_rois)
from tests.helpers.tools import (FEW_LAYERS, NO_VAL, ONE_ITER, REPO, SHALLOW_DINAT_L, as_shipped, run_python, run_tool_here,
                                 toy_coco_options, train_options)

DET_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').glob('*maskrcnn_*_coco.py'))


def run_tool(*args, **kwargs) -> str:
    return run_python(*args, **kwargs).log


def test_all_detection_configs_are_shipped():
    """The release's detection configs (detection/configs/{dinat,nat,dinat_s}), family by family."""
    names = {Path(c).name for c in DET_CONFIGS}
    release = {'dinat': (('mini', 'tiny', 'small'), ('mini', 'tiny', 'small', 'base', 'large')),
               'nat': (('mini', 'tiny', 'small'), ('mini', 'tiny', 'small', 'base')),
               'dinat_s': (('tiny', 'small'), ('tiny', 'small', 'base', 'large'))}
    assert names == {f'maskrcnn_{f}_{v}_coco.py' for f, (mask, _) in release.items() for v in mask} | \
        {f'cascade_maskrcnn_{f}_{v}_coco.py' for f, (_, cascade) in release.items() for v in cascade}


@pytest.mark.parametrize('config', [pytest.param(c, marks=pytest.mark.slow) if 'cascade' in c else c
                                    for c in DET_CONFIGS])  # the cascades' three heads take seconds
def test_config_has_the_releases_size_and_trains_a_step_at_reduced_width(config):
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.model.backbone.type == BACKBONE_TYPES[family(config)] and cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.init_cfg.checkpoint.startswith(('https://shi-labs.com/projects/dinat/checkpoints/',
                                                              'https://shi-labs.com/projects/nat/checkpoints/CLS/'))
    check_full_size(config, cfg)
    model = build_model(with_few_rois(at_reduced_width(cfg)).model, 'mmdet')
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 64, 96), (3, 96, 64)], num_items=[2, 1],
                          num_classes=80, with_mask=True)
    _, preds = train_step_and_predict(model, data)
    assert len(preds) == 2 and preds[1].pred_instances.masks.shape[1:] == (96, 64)


def _train(root, work, iters, *extra):
    return train_options(work, iters, *toy_coco_options(root), *extra)


def _test(root, work):
    return ['--work-dir', work, '--cfg-options', *toy_coco_options(root)]


@pytest.mark.slow
def test_toy_run_through_train_and_test_tools(toy_coco, det_checkpoint, tmp_path):
    """det_checkpoint is tools/train.py's; here tools/test.py evaluates, draws and dumps it."""
    pointer = Path((det_checkpoint.parent / 'last_checkpoint').read_text())
    assert det_checkpoint.is_file() and pointer.resolve() == det_checkpoint.resolve()
    log = run_tool('tools/test.py', TOY, det_checkpoint, '--show-dir', tmp_path / 'vis', '--out', tmp_path / 'preds.pkl',
                   *_test(toy_coco, tmp_path / 'work'))
    metrics = dict(re.findall(r'(coco/(?:bbox|segm)_mAP): (-?[\d.]+)', log))
    assert set(metrics) == {'coco/bbox_mAP', 'coco/segm_mAP'}
    assert (tmp_path / 'preds.pkl').is_file()
    assert len(list((tmp_path / 'vis').rglob('*.jpg'))) == 4


@pytest.mark.slow
def test_resume_ends_with_the_same_weights(toy_coco, tmp_path):
    """--resume CKPT of the detector (random RPN/RoI sampling included) ends bit-identical to a
    straight run. Kills at any moment, during saves too, are tested on the segmentor
    (tests/test_segmentation.py): the checkpoint hook and the resume choice are the same."""
    every = ('default_hooks.checkpoint.interval=1', 'randomness.deterministic=True')
    run_tool('tools/train.py', TOY, *_train(toy_coco, tmp_path / 'straight', 2, *every))
    # the straight run's first checkpoint, continued in a work dir of its own
    log = run_tool('tools/train.py', TOY, '--resume', tmp_path / 'straight' / 'iter_1.pth',
                   *_train(toy_coco, tmp_path / 'resumed', 2, *every))
    assert re.search(r'resumed epoch: \d+, iter: 1\b', log) and not (tmp_path / 'resumed' / 'iter_1.pth').exists()
    straight = load_checkpoint_file(tmp_path / 'straight' / 'iter_2.pth')['state_dict']
    resumed = load_checkpoint_file(tmp_path / 'resumed' / 'iter_2.pth')['state_dict']
    assert straight.keys() == resumed.keys()
    first = load_checkpoint_file(tmp_path / 'straight' / 'iter_1.pth')['state_dict']
    assert any(not torch.equal(first[k], straight[k]) for k in straight)  # training moved the weights
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.mark.slow
def test_two_process_gloo_training_then_test(toy_coco, tmp_path):
    work = tmp_path / 'dist'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29517', OMP_NUM_THREADS='1')
    out = subprocess.run(['bash', 'tools/dist_train.sh', TOY, '2', *map(str, _train(toy_coco, work, 2))],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and "backend='gloo'" in log
    log = run_tool('tools/test.py', TOY, work / 'iter_2.pth', *_test(toy_coco, work))
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log


def _coco_layout(root: Path, toy: Path) -> None:
    """A tiny data/coco in the standard layout with the 80 COCO categories (ids 1-80 here; the toy
    shapes become person, bicycle and car)."""
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    for split, src in (('train2017', 'train'), ('val2017', 'val')):
        ann = json.loads((toy / 'annotations' / f'instances_{src}.json').read_text())
        ann['images'] = ann['images'][:2]
        keep = {im['id'] for im in ann['images']}
        ann['annotations'] = [a for a in ann['annotations'] if a['image_id'] in keep]
        ann['categories'] = [dict(id=i + 1, name=name) for i, name in enumerate(names)]
        (root / split).mkdir(parents=True)
        for im in ann['images']:
            (root / split / im['file_name']).write_bytes((toy / src / im['file_name']).read_bytes())
        (root / 'annotations').mkdir(exist_ok=True)
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(ann))


@pytest.mark.slow
def test_maskrcnn_tiny_coco_config_starts_training_on_data_coco(toy_coco, tmp_path):
    _coco_layout(tmp_path / 'data' / 'coco', toy_coco)
    log = run_tool(REPO / 'tools/train.py', REPO / 'configs/maskrcnn_dinat_tiny_coco.py', '--work-dir', tmp_path / 'work',
                   '--cfg-options', 'model.backbone.init_cfg=None', 'train_cfg.max_epochs=1',
                   'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', *NO_VAL,
                   cwd=tmp_path)
    assert 'Epoch(train) [1][1/1]' in log
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


# One config of each family and kind besides DiNAT's (whose Mask R-CNN tiny runs above), the options
# that make its schedule one short run, and its test options.
ONE_EPOCH = ['train_cfg.max_epochs=1', *NO_VAL]
# A detector one epoch from random weights may score every box under the configs' 0.05 (these runs
# are not seeded). The results are then empty and COCO evaluation prints no mAP. With any score
# kept, each image has its top detections.
ANY_SCORE = ['model.test_cfg.rcnn.score_thr=0.0']
# Each family and each kind end to end once: NAT through a Cascade, DiNAT_s through a Mask R-CNN
# (and a UPerNet, tests/test_segmentation.py); DiNAT's Mask R-CNN runs as shipped on data/coco below.
FAMILY_RUNS = {  # config: (schedule, test options)
    'configs/cascade_maskrcnn_nat_mini_coco.py': (ONE_EPOCH, ANY_SCORE),
    'configs/maskrcnn_dinat_s_tiny_coco.py': (ONE_EPOCH, ANY_SCORE),
    'configs/mask2former_dinat_large_coco_instance.py': (ONE_ITER + SHALLOW_DINAT_L, []),
}


@pytest.mark.slow
@pytest.mark.parametrize('config', FAMILY_RUNS)
def test_family_config_runs_through_train_and_test_tools_unchanged(config, toy_coco, tmp_path):
    """The config file as shipped; --cfg-options give the data root, the schedule's length, no
    ImageNet download and no worker processes."""
    root = tmp_path / 'coco'
    _coco_layout(root, toy_coco)
    options = as_shipped(root, *[f'{ev}.ann_file={root}/annotations/instances_val2017.json'
                                 for ev in ('val_evaluator', 'test_evaluator')])
    schedule, test_options = FAMILY_RUNS[config]
    work = tmp_path / 'work'
    run_tool(REPO / 'tools/train.py', REPO / config, '--work-dir', work, '--cfg-options', *options, *schedule,
             cwd=tmp_path)
    ckpt = work / ('iter_1.pth' if 'train_cfg.max_iters=1' in schedule else 'epoch_1.pth')
    assert ckpt.is_file()
    shallow = [o for o in schedule if o in SHALLOW_DINAT_L]
    log = run_tool(REPO / 'tools/test.py', REPO / config, ckpt, '--work-dir', work, '--cfg-options', *options,
                   *shallow, *test_options, cwd=tmp_path)
    metrics = dict(re.findall(r'(coco/(?:bbox|segm)_mAP): (-?[\d.]+)', log))
    assert 'coco/segm_mAP' in metrics, log[-3000:]


def _coco_panoptic_layout(root: Path, toy: Path) -> None:
    """_coco_layout plus COCO panoptic annotations: per image a PNG whose RGB encodes the segment id
    (R + 256 G + 65536 B), each toy shape a thing segment and the rest one stuff segment ('wall-other-
    merged'), and annotations/panoptic_{split}.json with the 80 thing and 53 stuff categories."""
    import cv2
    import numpy as np
    from mmdet.datasets import CocoPanopticDataset
    from pycocotools import mask as mask_utils
    _coco_layout(root, toy)
    meta = CocoPanopticDataset.METAINFO
    categories = [dict(id=i + 1, name=n, isthing=1) for i, n in enumerate(meta['thing_classes'])] + \
        [dict(id=81 + i, name=n, isthing=0) for i, n in enumerate(meta['stuff_classes'])]
    stuff_id = next(c['id'] for c in categories if c['name'] == 'wall-other-merged')
    for split in ('train2017', 'val2017'):
        instances = json.loads((root / 'annotations' / f'instances_{split}.json').read_text())
        (root / 'annotations' / f'panoptic_{split}').mkdir()
        annotations = []
        for im in instances['images']:
            ids = np.zeros((im['height'], im['width']), np.int64)
            segments = [a for a in instances['annotations'] if a['image_id'] == im['id']]
            for a in segments:  # later shapes cover earlier ones
                rle = mask_utils.merge(mask_utils.frPyObjects(a['segmentation'], im['height'], im['width']))
                ids[mask_utils.decode(rle) > 0] = a['id']
            ids[ids == 0] = 10_000
            info = []
            for segment_id in np.unique(ids):
                ys, xs = np.nonzero(ids == segment_id)
                category = stuff_id if segment_id == 10_000 else \
                    next(a['category_id'] for a in segments if a['id'] == segment_id)
                info.append(dict(id=int(segment_id), category_id=category, iscrowd=0, area=int(len(ys)),
                                 bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                       int(ys.max() - ys.min() + 1)]))
            rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
            png = im['file_name'].replace('.jpg', '.png')
            cv2.imwrite(str(root / 'annotations' / f'panoptic_{split}' / png), rgb[..., ::-1])
            annotations.append(dict(image_id=im['id'], file_name=png, segments_info=info))
        (root / 'annotations' / f'panoptic_{split}.json').write_text(json.dumps(
            dict(images=instances['images'], annotations=annotations, categories=categories)))


@pytest.mark.slow
def test_mask2former_coco_panoptic_config_trains_and_test_names_what_evaluation_needs(toy_coco, tmp_path, monkeypatch):
    """mmdet's panoptic loading and PQ metric import panopticapi, which only git provides. Without
    it train.py refuses up front, naming it; with tests/helpers/stubs/panopticapi (only rgb2id) the config
    trains; test.py then names panopticapi.evaluation before any inference."""
    root = tmp_path / 'coco'
    _coco_panoptic_layout(root, toy_coco)
    config = REPO / 'configs/mask2former_dinat_large_coco_panoptic.py'
    evaluators = [f'{ev}.0.{field}={root}/annotations/panoptic_val2017{suffix}' for ev in ('val_evaluator', 'test_evaluator')
                  for field, suffix in (('ann_file', '.json'), ('seg_prefix', '/'))] + \
        [f'{ev}.1.ann_file={root}/annotations/instances_val2017.json' for ev in ('val_evaluator', 'test_evaluator')]
    options = as_shipped(root, *evaluators)
    work = tmp_path / 'work'
    train = [REPO / 'tools/train.py', config, '--work-dir', work, '--cfg-options', *options, *ONE_ITER, *SHALLOW_DINAT_L]
    if importlib.util.find_spec('panopticapi') is None:
        out = run_tool_here(*train)
        assert out.code != 0 and 'LoadPanopticAnnotations needs panopticapi.utils' in out.stderr, out.stderr[-2000:]
        assert 'Traceback' not in out.stderr and not list(work.glob('*.pth'))
    stubs = str(REPO / 'tests' / 'helpers' / 'stubs')
    stub = dict(os.environ, PYTHONPATH=os.pathsep.join([stubs, os.environ.get('PYTHONPATH', '')]))
    log = run_tool(*train, cwd=tmp_path, env=stub)
    assert (work / 'iter_1.pth').is_file(), log[-2000:]
    test = [REPO / 'tools/test.py', config, work / 'iter_1.pth', '--work-dir', work, '--cfg-options', *options,
            *SHALLOW_DINAT_L]
    monkeypatch.syspath_prepend(stubs)
    try:
        out = run_tool_here(*test)  # run_tool_here also fails if test.py got as far as a Runner
    finally:
        sys.modules.pop('panopticapi', None)  # the stub leaves with its path
    assert out.code != 0 and 'CocoPanopticMetric needs panopticapi.evaluation' in out.stderr, out.stderr[-2000:]
    assert 'Epoch(test)' not in out.log  # refused before any inference


def test_train_tool_names_a_missing_dataset_and_config(tmp_path):
    out = run_tool_here('tools/train.py', 'configs/maskrcnn_dinat_tiny_coco.py', '--cfg-options',
                        f'train_dataloader.dataset.data_root={tmp_path}/nowhere/')
    assert out.code != 0 and f'dataset not found: {tmp_path}/nowhere/annotations/instances_train2017.json' in out.stderr
    out = run_tool_here('tools/train.py', 'configs/no_such.py')
    assert out.code != 0 and 'config file not found: configs/no_such.py' in out.stderr


@pytest.mark.slow
def test_test_tool_refuses_a_checkpoint_of_another_architecture(toy_coco, tmp_path):
    other = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7)}}, other)
    out = run_python('tools/test.py', TOY, other, *_test(toy_coco, tmp_path), ok=False)
    assert out.code != 0 and f'checkpoint {other} does not match the model' in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize('change', ['width', 'classes'])
def test_test_tool_refuses_a_checkpoint_with_the_models_keys_and_other_shapes(change, toy_coco, tmp_path):
    cfg = Config.fromfile(str(REPO / TOY))
    cfg.model.backbone.init_cfg = None
    if change == 'width':
        cfg.model.backbone.embed_dim = 32
        cfg.model.neck.in_channels = [32, 64, 128, 256]
        key, shapes = 'backbone.patch_embed.proj.0.weight', '(16, 3, 3, 3) vs model (32, 3, 3, 3)'
    else:
        cfg.model.roi_head.bbox_head.num_classes = cfg.model.roi_head.mask_head.num_classes = 5
        key, shapes = 'roi_head.bbox_head.fc_cls.weight', '(6, 1024) vs model (4, 1024)'
    other = tmp_path / f'other_{change}.pth'
    torch.save({'state_dict': build_model(cfg.model, 'mmdet').state_dict()}, other)
    out = run_python('tools/test.py', TOY, other, *_test(toy_coco, tmp_path), ok=False)
    assert out.code != 0 and f'checkpoint {other} does not match the model' in out.stderr, out.stderr[-2000:]
    assert f'{key}: checkpoint {shapes}' in out.stderr and 'Traceback' not in out.stderr


@pytest.mark.slow
def test_bf16_features_run_backbone_and_neck_in_bfloat16_and_heads_in_float32():
    from mmdet.testing import demo_mm_inputs
    from dinat_mm.registry import scope_models
    from dinat_mm.runner import bf16_features
    cfg = Config.fromfile(str(REPO / TOY))
    torch.manual_seed(0)
    model = scope_models('mmdet').build(cfg.model)
    model.eval()
    data = model.data_preprocessor(demo_mm_inputs(1, [(3, 96, 128)], num_items=[1]), False)
    seen = []
    model.backbone.levels[0].blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        ref = model.extract_feat(data['inputs'])
        model.extract_feat = bf16_features(model.extract_feat)
        low = model.extract_feat(data['inputs'])
        model(**data, mode='predict')  # nms and RoIAlign get float32: no error
    assert seen == [torch.float32, torch.bfloat16, torch.bfloat16]
    for a, b in zip(low, ref):
        assert a.dtype == torch.float32
        assert 0 < (a - b).abs().max() <= 0.05 * b.abs().max()  # bfloat16 did run, and stays close


@pytest.mark.slow
def test_amp_computes_a_training_detectors_features_in_bfloat16_and_hands_them_over_in_float32():
    from types import SimpleNamespace
    from mmdet.testing import demo_mm_inputs
    from mmengine.logging import MMLogger
    from mmengine.optim import OptimWrapper
    from mmengine.registry import HOOKS
    from dinat_mm.cli import config
    cfg = Config.fromfile(str(REPO / TOY))
    config.enable_amp(cfg, force=True)
    model = build_model(cfg.model, 'mmdet')
    for hook in cfg.custom_hooks:
        if hook.type == 'BF16FeaturesHook':
            HOOKS.build(hook).before_run(SimpleNamespace(model=model, logger=MMLogger.get_current_instance()))
    seen = {}

    def record(name, value):  # hooks must return None, or their value replaces the output
        seen.setdefault(name, value)

    model.backbone.levels[1].blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: record('qkv', o.dtype))
    model.neck.register_forward_hook(lambda m, i, o: record('neck', o[0].dtype))
    model.rpn_head.register_forward_pre_hook(lambda m, a: record('rpn', {f.dtype for f in a[0]}))
    model.roi_head.bbox_roi_extractor.register_forward_pre_hook(lambda m, a: record('roi', {f.dtype for f in a[0]}))
    data = demo_mm_inputs(2, [(3, 96, 128), (3, 128, 96)], num_items=[2, 1], num_classes=3, with_mask=True)
    losses = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)))
    assert seen == dict(qkv=torch.bfloat16, neck=torch.bfloat16, rpn={torch.float32}, roi={torch.float32})
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
def test_amp_trains_detectors_with_bfloat16_features_on_cpu(toy_coco, tmp_path):
    run_tool('tools/train.py', TOY, '--amp', 'force', *_train(toy_coco, tmp_path / 'amp', 1))
    assert "type='BF16FeaturesHook'" in (tmp_path / 'amp' / Path(TOY).name).read_text()
    log = next((tmp_path / 'amp').glob('*/*.log')).read_text()
    assert 'bfloat16 autocast on CPU for the backbone and neck; heads in float32' in log
    assert (tmp_path / 'amp' / 'iter_1.pth').is_file()


@pytest.mark.slow
def test_compile_trains_the_toy_detector_and_tests_it(toy_coco, tmp_path):
    cache = tmp_path / 'inductor'
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
    work = tmp_path / 'compiled'
    # one iteration and one test image: each new image size compiles afresh
    run_tool('tools/train.py', TOY, '--compile', *_train(toy_coco, work, 1, *FEW_LAYERS), env=env)
    assert "type='CompileHook'" in (work / Path(TOY).name).read_text()
    assert list(cache.rglob('*.py')), 'inductor generated no code: nothing was compiled'
    state = load_checkpoint_file(work / 'iter_1.pth')['state_dict']
    assert not any('_orig_mod' in k for k in state)  # compiled in place: checkpoint keys unchanged
    log = run_tool('tools/test.py', TOY, work / 'iter_1.pth', '--compile', *_test(toy_coco, work), *FEW_LAYERS,
                   'test_dataloader.dataset.indices=1', env=env)
    assert re.search(r'coco/bbox_mAP: -?[\d.]+', log)


@pytest.mark.parametrize('config', [c for c in DET_CONFIGS if family(c) == 'nat'][:1] + ['configs/upernet_nat_tiny_ade20k.py'])
def test_nat_configs_refuse_dilations_other_than_one(config):
    from mmengine.registry import MODELS
    cfg = Config.fromfile(str(REPO / config))
    backbone = dict(cfg.model.backbone, init_cfg=None)
    assert MODELS.build(backbone).dilations == [[1] * d for d in MODELS.build(backbone).depths]
    backbone['dilations'] = [[1] * d for d in (3, 4, 6, 5)]
    backbone['dilations'][2][1] = 2
    with pytest.raises(ValueError, match=r'NAT has no dilations \(all are 1\); got dilations=.*: use DiNAT'):
        MODELS.build(backbone)
