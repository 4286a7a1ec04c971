"""The tools' refusals (each names what is wrong, before any work is done), --amp on CPUs without
native bfloat16, auto-resume's choice of checkpoint, and get_flops.py / make_toy_data.py runs."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from dinat_mm.cli import checks
from dinat_mm.cli import config as tool_config
from dinat_mm.cli.resume import resume_point
from dinat_mm.errors import UserError
from dinat_mm.runner import cpu_bf16_support

from tests.helpers.tools import DET_TOY as DET
from tests.helpers.tools import SEG_TOY as SEG
from tests.helpers.tools import REPO, run_python, run_tool_here


def _tool(*args):
    """Run a tool in this interpreter (the refusals end before any work); returns (exit code, stderr)."""
    run = run_tool_here(*args)
    return run.code, run.stderr


@pytest.fixture(scope='module')
def other_scope(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'recognizer.py'
    path.write_text("default_scope = 'mmocr'\nmodel = dict(type='SARNet')\n")
    return path


@pytest.mark.parametrize('case', ['test_missing_checkpoint', 'test_out_not_pkl', 'train_resume_missing',
                                  'train_other_scope', 'test_other_scope', 'train_slurm', 'convert_missing_source',
                                  'convert_unknown_layout', 'convert_whole_to_safetensors', 'flops_other_scope'])
def test_bad_input_is_refused_with_a_message_that_names_it(case, tmp_path, other_scope):
    unknown = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(4, 3, 3, 3), 'fc.weight': torch.zeros(10, 4)}, unknown)
    detector = tmp_path / 'detector.pth'  # what --whole converts
    torch.save({'state_dict': {'backbone.patch_embed.proj.0.weight': torch.zeros(4, 3, 3, 3)}}, detector)
    cases = {
        'test_missing_checkpoint': (['tools/test.py', DET, tmp_path / 'none.pth'], f'checkpoint not found: {tmp_path}/none.pth'),
        'test_out_not_pkl': (['tools/test.py', DET, unknown, '--out', tmp_path / 'preds.json'],
                             f'--out must be a .pkl file, got {tmp_path}/preds.json'),
        'train_resume_missing': (['tools/train.py', DET, '--resume', tmp_path / 'none.pth'],
                                 f'checkpoint not found: {tmp_path}/none.pth'),
        'train_other_scope': (['tools/train.py', other_scope],
                              f"{other_scope}: default_scope must be one of 'mmdet', 'mmseg', 'mmpretrain', got 'mmocr'"),
        'test_other_scope': (['tools/test.py', other_scope, unknown], "default_scope must be one of 'mmdet', 'mmseg', 'mmpretrain'"),
        'train_slurm': (['tools/train.py', DET, '--launcher', 'slurm'],
                        '--launcher slurm needs GPUs; on CPU use --launcher pytorch'),
        'convert_missing_source': (['tools/convert_checkpoint.py', tmp_path / 'none.pth', tmp_path / 'o.pth'],
                                   f'{tmp_path}/none.pth'),
        'convert_unknown_layout': (['tools/convert_checkpoint.py', unknown, tmp_path / 'o.pth'],
                                   "unrecognised checkpoint layout (first keys: ['conv1.weight', 'fc.weight'])"),
        'convert_whole_to_safetensors': (['tools/convert_checkpoint.py', '--whole', detector, tmp_path / 'o.safetensors'],
                                         "--whole cannot write"),
        'flops_other_scope': (['tools/get_flops.py', other_scope], "default_scope must be one of 'mmdet', 'mmseg', 'mmpretrain'"),
    }
    args, words = cases[case]
    code, err = _tool(*args)
    assert code != 0 and words in err, err[-2000:]
    assert 'Traceback' not in err
    assert not (tmp_path / 'o.pth').exists() and not (tmp_path / 'o.safetensors').exists()


def _pretend_no_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def test_cpu_bf16_support_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: True)
    assert cpu_bf16_support() is None
    _pretend_no_native_bf16(monkeypatch)
    if 'bf16' not in Path('/proc/cpuinfo').read_text().split():  # x86 names it avx512_bf16, ARM bf16
        assert cpu_bf16_support().startswith(f'CPU capability {torch.backends.cpu.get_cpu_capability()}')


@pytest.mark.parametrize('config', [DET, SEG])
def test_amp_is_refused_without_native_bf16_unless_forced(config, monkeypatch):
    monkeypatch.setattr(tool_config, 'cpu_bf16_support', lambda: 'CPU capability AVX2, without AVX512_BF16, AMX or BF16')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config.fromfile(str(REPO / config))
    with pytest.raises(UserError, match=r'--amp on this CPU \(CPU capability AVX2.*would emulate bfloat16.*'
                                               r'docs/performance.md.*--amp force'):
        tool_config.enable_amp(cfg)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper' and 'BF16FeaturesHook' not in cfg.pretty_text
    tool_config.enable_amp(cfg, force=True)
    assert cfg.optim_wrapper.type == 'CPUBF16OptimWrapper' or \
        any(h.type == 'BF16FeaturesHook' for h in cfg.custom_hooks)


def test_train_tool_refuses_amp_before_training_and_accepts_force(monkeypatch):
    monkeypatch.setattr(tool_config, 'cpu_bf16_support', lambda: 'CPU capability AVX2, without AVX512_BF16, AMX or BF16')
    code, err = _tool('tools/train.py', DET, '--amp')
    assert code != 0 and '--amp on this CPU (CPU capability AVX2' in err and 'Traceback' not in err
    code, err = _tool('tools/train.py', DET, '--amp', 'force', '--cfg-options', 'train_dataloader.dataset.data_root=/nowhere/')
    assert code != 0 and 'dataset not found: /nowhere/' in err  # past the --amp check


def _save(path, n=4):
    torch.save({'state_dict': {'w': torch.full((n,), float(n))}, 'meta': {}}, path)
    return path


def test_resume_point_takes_the_newest_readable_checkpoint_and_names_the_rest(tmp_path):
    from dinat_mm.checkpoint import load_checkpoint_file
    import os
    warnings = []
    assert resume_point(str(tmp_path), load_checkpoint_file, warnings.append) is None  # a first run
    old, good, bad = _save(tmp_path / 'iter_2.pth'), _save(tmp_path / 'iter_4.pth'), _save(tmp_path / 'iter_6.pth')
    bad.write_bytes(bad.read_bytes()[:200])  # a full disk, or a run killed by an older tool
    for i, p in enumerate((old, good, bad)):
        os.utime(p, ns=(10**18 + i * 10**9,) * 2)
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    assert resume_point(str(tmp_path), load_checkpoint_file, warnings.append) == str(good)
    assert f'{bad}: truncated or corrupt checkpoint' in warnings[0]
    assert f'resuming from {good}, the newest readable checkpoint (last_checkpoint names {bad})' in warnings[1]
    warnings.clear()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))  # removed by hand
    bad.unlink()
    assert resume_point(str(tmp_path), load_checkpoint_file, warnings.append) == str(good)
    assert f'names {tmp_path}/iter_8.pth, which does not exist' in warnings[0]


@pytest.mark.slow
def test_get_flops_reports_the_models_parameter_count():
    from dinat_mm.registry import scope_models
    out = run_python('tools/get_flops.py', SEG, '--shape', '64', '96')
    cfg = Config.fromfile(str(REPO / SEG))
    params = sum(p.numel() for p in scope_models('mmseg').build(cfg.model).parameters())
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(f'{SEG}: input 64x96, params {params / 1e6:.1f} M, FLOPs '), line
    assert float(line.split('FLOPs ')[1].split()[0]) >= 0


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['coco', 'ade'])
def test_make_toy_data_writes_the_requested_splits(kind, tmp_path):
    run_python('tools/make_toy_data.py', kind, tmp_path / kind, '--train', '3', '--val', '2', '--size', '64')
    root = tmp_path / kind
    if kind == 'coco':
        for split, n in (('train', 3), ('val', 2)):
            ann = json.loads((root / 'annotations' / f'instances_{split}.json').read_text())
            assert len(ann['images']) == n and ann['annotations']
            assert all((root / split / im['file_name']).is_file() for im in ann['images'])
    else:
        for split, n in (('training', 3), ('validation', 2)):
            images = sorted(p.stem for p in (root / 'images' / split).glob('*.jpg'))
            assert len(images) == n and images == sorted(p.stem for p in (root / 'annotations' / split).glob('*.png'))


@pytest.mark.slow
def test_get_flops_counts_mmseg_mask2former_whose_head_needs_the_samples():
    """mmseg's EncoderDecoder tensor mode calls Mask2FormerHead.forward without the samples it needs."""
    config = 'configs/mask2former_dinat_large_ade20k_semantic.py'
    out = run_python('tools/get_flops.py', config, '--shape', '64', '64')
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(f'{config}: input 64x64, params 219.9 M, FLOPs '), line
    parts = dict(p.rsplit(' ', 2)[:2] for p in line.split('(')[1].rstrip(')').split(', '))
    assert set(parts) == {'backbone', 'decode_head'} and float(parts['decode_head']) > 0, line


def test_evaluator_files_are_checked_before_inference(tmp_path):
    """An evaluator's files are read after the whole inference; their paths do not follow data_root."""
    ann = tmp_path / 'instances_val.json'
    ann.write_text('{}')
    cfg = Config(dict(test_evaluator=[dict(type='CocoMetric', ann_file=str(ann)),
                                      dict(type='CocoMetric', ann_file=str(tmp_path / 'nowhere.json'))]))
    with pytest.raises(UserError, match=f'test_evaluator.1 \\(CocoMetric\\): ann_file not found: '
                                               f'{tmp_path}/nowhere.json .*--cfg-options test_evaluator.1.ann_file='):
        checks.check_evaluators(cfg, ['test_evaluator'])
    cfg.test_evaluator.pop(1)
    checks.check_evaluators(cfg, ['test_evaluator'])  # raises if the existing file were refused


def test_panopticapi_is_named_where_mmdet_would_import_it(monkeypatch):
    cfg = Config(dict(train_dataloader=dict(dataset=dict(pipeline=[dict(type='LoadPanopticAnnotations')])),
                      test_evaluator=[dict(type='CocoPanopticMetric'), dict(type='CocoMetric')]))
    real = importlib.util.find_spec
    present = set()

    def find_spec(name, *args):
        if name.startswith('panopticapi'):
            if not present:
                raise ModuleNotFoundError(name)
            return object() if name in present else None
        return real(name, *args)
    monkeypatch.setattr(importlib.util, 'find_spec', find_spec)
    with pytest.raises(UserError, match=r'LoadPanopticAnnotations needs panopticapi.utils.*pip install git\+'):
        checks.check_panopticapi(cfg, ['train_dataloader'])
    with pytest.raises(UserError, match='CocoPanopticMetric needs panopticapi.evaluation'):
        checks.check_panopticapi(cfg, ['test_evaluator'])
    present.update({'panopticapi', 'panopticapi.utils'})  # a package without evaluation
    checks.check_panopticapi(cfg, ['train_dataloader'])
    with pytest.raises(UserError, match='CocoPanopticMetric needs panopticapi.evaluation'):
        checks.check_panopticapi(cfg, ['test_evaluator'])
