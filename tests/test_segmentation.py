"""Segmentation configs and tools: every shipped UPerNet config builds offline, trains a step and
predicts full-resolution maps; the tools train, evaluate mIoU and run the TTA setting."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tests.helpers.kill_resume import assert_same_training_state, train_with_kills
from tests.helpers.models import (BACKBONE_TYPES, at_reduced_width, build_model, check_full_size, family,
                                   seg_batch, train_step_and_predict)
from tests.helpers.tools import (ONE_ITER, REPO, SHALLOW_DINAT_L, as_shipped, run_python, run_tool_here, toy_ade_options,
                                 train_options)
from tests.helpers.tools import SEG_TOY as TOY

SEG_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').glob('upernet_*_ade20k.py'))


def test_all_segmentation_configs_are_shipped():
    """The release's UPerNet configs (segmentation/configs/{dinat,nat,dinat_s})."""
    release = {'dinat': ('mini', 'tiny', 'small', 'base', 'large'), 'nat': ('mini', 'tiny', 'small', 'base'),
               'dinat_s': ('tiny', 'small', 'base', 'large')}
    assert {Path(c).name for c in SEG_CONFIGS} == {f'upernet_{f}_{v}_ade20k.py' for f, vs in release.items() for v in vs}


@pytest.mark.parametrize('config', SEG_CONFIGS)
def test_config_has_the_releases_size_and_trains_a_step_at_reduced_width_predicting_full_resolution(config):
    cfg = Config.fromfile(str(REPO / config))
    assert cfg.default_scope == 'mmseg' and cfg.model.backbone.type == BACKBONE_TYPES[family(config)]
    assert cfg.model.backbone.init_cfg.checkpoint.startswith(('https://shi-labs.com/projects/dinat/checkpoints/',
                                                              'https://shi-labs.com/projects/nat/checkpoints/CLS/'))
    check_full_size(config, cfg)
    cfg.model.data_preprocessor.size = (64, 80)
    model = build_model(at_reduced_width(cfg).model, 'mmseg')
    _, preds = train_step_and_predict(model, seg_batch((64, 80)))
    assert [p.pred_sem_seg.data.shape for p in preds] == [(1, 64, 80)] * 2


def _options(root, work, iters=2):
    return train_options(work, iters, *toy_ade_options(root), 'train_dataloader.batch_size=2')


def _run(*args, env=None) -> str:
    return run_python(*args, env=env).log


@pytest.mark.slow
def test_toy_run_through_tools_yields_miou_and_tta_runs(toy_ade, seg_checkpoint, tmp_path):
    """seg_checkpoint is tools/train.py's; here tools/test.py evaluates and draws it, with and without TTA."""
    ckpt = seg_checkpoint
    log = _run('tools/test.py', TOY, ckpt, '--show-dir', tmp_path / 'vis', '--work-dir', tmp_path / 'work',
               '--cfg-options', *[f'test_dataloader.dataset.data_root={toy_ade}'])
    assert re.search(r'mIoU: \d+\.\d+', log)
    assert len(list((tmp_path / 'vis').rglob('*.png'))) == 3
    log = _run('tools/test.py', TOY, ckpt, '--tta', '--work-dir', tmp_path / 'tta', '--cfg-options',
               f'test_dataloader.dataset.data_root={toy_ade}')
    assert re.search(r'mIoU: \d+\.\d+', log)


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/upernet_dinat_s_tiny_ade20k.py',
                                    'configs/mask2former_dinat_large_ade20k_semantic.py'])
def test_family_config_runs_through_train_and_test_tools_unchanged(config, toy_ade, tmp_path):
    """DiNAT_s' UPerNet (NAT runs through a Cascade in tests/test_detection.py) and Mask2Former
    DiNAT-L, the config files as shipped; --cfg-options give the data root, one iteration, no
    ImageNet download and no worker processes."""
    mask2former = 'mask2former' in config  # UPerNet's pooled BN needs two images
    options = as_shipped(toy_ade, train_images=1 if mask2former else 2) + (SHALLOW_DINAT_L if mask2former else [])
    work = tmp_path / 'work'
    _run('tools/train.py', config, '--work-dir', work, '--cfg-options', *options, *ONE_ITER)
    log = _run('tools/test.py', config, work / 'iter_1.pth', '--work-dir', work, '--cfg-options', *options)
    assert re.search(r'mIoU: \d+\.\d+', log), log[-3000:]


@pytest.mark.slow
def test_killed_at_any_moment_and_resumed_ends_bit_identical(toy_ade, tmp_path):
    every2 = ('default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=1',
              'default_hooks.logger.interval=1')
    _run('tools/train.py', TOY, *_options(toy_ade, tmp_path / 'straight', 8), *every2)
    work = tmp_path / 'killed'
    during_save, kills, out = train_with_kills([TOY, *_options(toy_ade, work, 8), *every2], work, 8,
                                               ['save', 'random', 'save'], seed=4)
    assert during_save == 2, kills
    assert sum(resumed > 0 for _, resumed, _ in kills) >= 1, kills
    assert f'{work}/iter_108.pth: truncated or corrupt checkpoint' in out
    assert_same_training_state(tmp_path / 'straight' / 'iter_8.pth', work / 'iter_8.pth')


@pytest.mark.slow
def test_two_process_gloo_training_ends_with_identical_weights_on_both_ranks_then_dist_test(toy_ade, tmp_path):
    # The toy UPerNet's heads use SyncBN: on CPU tools/train.py makes it BN, or gloo would fail.
    config = tmp_path / 'ddp.py'
    config.write_text(f"_base_ = ['{REPO / TOY}']\n"
                      "custom_imports = dict(imports=['dinat_mm', 'tests.helpers.rank_weights'], allow_failed_imports=False)\n"
                      "custom_hooks = [dict(type='RNGStateHook'), dict(type='SaveRankWeightsHook')]\n")
    env = dict(os.environ, PYTHON=sys.executable, PORT='29523', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    work = tmp_path / 'dist'
    out = subprocess.run(['bash', 'tools/dist_train.sh', config, '2', *map(str, _options(toy_ade, work, 3))],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    ranks = [torch.load(work / f'rank{r}_weights.pth') for r in (0, 1)]
    initial = initial_weights(config)
    assert any(not torch.equal(initial[k], ranks[0][k]) for k in initial)  # training did move the weights
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    out = subprocess.run(['bash', 'tools/dist_test.sh', config, work / 'iter_3.pth', '2', '--work-dir', tmp_path / 'test',
                          '--cfg-options', f'test_dataloader.dataset.data_root={toy_ade}'],
                         cwd=REPO, env=dict(env, PORT='29524'), capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert re.search(r'mIoU: \d+\.\d+', log) and 'Distributed training: True' in log


def initial_weights(config):
    """The weights training starts from: the config's model built with the same seed."""
    from mmengine.runner import set_random_seed
    from dinat_mm.registry import scope_models
    cfg = Config.fromfile(str(config))
    set_random_seed(cfg.randomness.seed)
    model = scope_models('mmseg').build(cfg.model)
    model.init_weights()
    return model.state_dict()


def test_syncbn_becomes_bn_for_cpu_distributed_runs_of_the_upernet_config(monkeypatch):
    from dinat_mm.cli import config
    from dinat_mm.registry import scope_models
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config.fromfile(str(REPO / 'configs/upernet_dinat_tiny_ade20k.py'))
    assert "type='SyncBN'" in cfg.pretty_text
    config.configure_launcher(cfg, 'pytorch')
    assert "type='SyncBN'" not in cfg.pretty_text and cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None and cfg.custom_hooks[-1].type == 'SyncNormStatsHook'
    cfg.model.backbone.init_cfg = None
    model = scope_models('mmseg').build(cfg.model)
    kinds = {type(m).__name__ for m in model.modules()}
    assert 'SyncBatchNorm' not in kinds and 'BatchNorm2d' in kinds


@pytest.mark.slow
def test_tta_runs_every_image_through_each_scale_and_flip(toy_ade, tmp_path):
    from mmengine.runner import Runner
    from mmseg.models import SegTTAModel
    from dinat_mm.cli import config
    cfg = Config.fromfile(str(REPO / TOY))
    cfg.work_dir = str(tmp_path)
    cfg.test_dataloader.dataset.data_root = str(toy_ade)
    config.enable_tta(cfg)
    runner = Runner.from_cfg(cfg)
    assert isinstance(runner.model, SegTTAModel)
    seen = []
    runner.model.module.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    metrics = runner.test()
    assert 'mIoU' in metrics
    images, ratios = 3, cfg.img_ratios  # the toy val split: three 256x256 images
    assert len(seen) == images * len(ratios) * 2
    for i in range(images):
        for j, r in enumerate(ratios):
            plain, flipped = seen[(i * len(ratios) + j) * 2: (i * len(ratios) + j) * 2 + 2]
            assert plain.shape[-2:] == (round(256 * r), round(256 * r))
            assert torch.equal(flipped, plain.flip(-1))  # the same scale, mirrored


@pytest.mark.slow
def test_amp_runs_the_segmentors_forward_under_bfloat16_autocast_in_its_optimizer_context():
    from mmengine.optim import build_optim_wrapper
    from dinat_mm.cli import config
    cfg = Config.fromfile(str(REPO / TOY))
    config.enable_amp(cfg, force=True)
    model = build_model(cfg.model, 'mmseg')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    states = []
    model.backbone.register_forward_hook(lambda m, i, o: states.append(
        (torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'), o[0].dtype)))
    model.decode_head.conv_seg.register_forward_hook(lambda m, i, o: states.append(
        (torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'), o.dtype)))
    losses = model.train_step(seg_batch((128, 128), classes=5), wrapper)
    assert states == [(True, torch.bfloat16, torch.bfloat16)] * 2
    assert torch.isfinite(losses['decode.loss_ce'])
    assert not torch.is_autocast_enabled('cpu')  # only inside the optimizer context


def test_tta_needs_the_config_entries(tmp_path):
    out = run_tool_here('tools/test.py', 'configs/maskrcnn_dinat_mini_coco.py', 'x.pth', '--tta')
    assert out.code != 0 and '--tta needs tta_model and tta_pipeline in the config' in out.stderr


@pytest.mark.slow
def test_amp_trains_segmentors_under_bfloat16_autocast_on_cpu(toy_ade, tmp_path):
    _run('tools/train.py', TOY, '--amp', 'force', *_options(toy_ade, tmp_path / 'amp', iters=1))
    assert "type='CPUBF16OptimWrapper'" in (tmp_path / 'amp' / Path(TOY).name).read_text()
    assert (tmp_path / 'amp' / 'iter_1.pth').is_file()
