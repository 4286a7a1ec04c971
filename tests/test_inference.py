"""mmdet's and mmseg's inference APIs on checkpoints written by tools/train.py, in fresh interpreters
(only the config's custom_imports imports dinat_mm), and their refusal of a code-running pickle."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dinat_mm.toydata import make_toy_ade, make_toy_coco

REPO = Path(__file__).resolve().parents[1]
DET = 'configs/toy/maskrcnn_dinat_mini_toy.py'
SEG = 'configs/toy/upernet_dinat_mini_toy.py'


def _python(script, cwd=REPO):
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    return out.returncode, out.stdout + out.stderr


def _train_one_iteration(config, work, options):
    code, log = _python(f'''
        import sys
        sys.argv = ['tools/train.py', {config!r}, '--work-dir', {str(work)!r}, '--cfg-options', *{options!r},
                    'train_cfg.max_iters=1', 'train_cfg.val_interval=1000', 'default_hooks.checkpoint.interval=1']
        exec(open('tools/train.py').read())
    ''')
    assert code == 0, log[-3000:]
    return work / 'iter_1.pth'


@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory):
    root = make_toy_coco(tmp_path_factory.mktemp('data') / 'coco', num_train=4, num_val=2, seed=1)
    options = [f'{loader}.dataset.data_root={root}/' for loader in ('train_dataloader', 'val_dataloader',
                                                                     'test_dataloader')]
    options += [f'{ev}.ann_file={root}/annotations/instances_val.json' for ev in ('val_evaluator', 'test_evaluator')]
    return _train_one_iteration(DET, tmp_path_factory.mktemp('det'), options), next((root / 'val').glob('*.jpg'))


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory):
    root = make_toy_ade(tmp_path_factory.mktemp('data') / 'ade', num_train=4, num_val=2, seed=2)
    options = [f'{loader}.dataset.data_root={root}' for loader in ('train_dataloader', 'val_dataloader',
                                                                    'test_dataloader')]
    return (_train_one_iteration(SEG, tmp_path_factory.mktemp('seg'), options),
            next((root / 'images' / 'validation').glob('*.jpg')))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}',)


@pytest.fixture
def malicious(tmp_path):
    """A checkpoint whose unpickling would run a shell command (creating ``marker``)."""
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)}, path)
    return path, marker


@pytest.mark.slow
def test_det_inferencer_and_init_detector_load_a_training_checkpoint(det_checkpoint, tmp_path):
    ckpt, image = det_checkpoint
    code, log = _python(f'''
        import sys
        assert 'dinat_mm' not in sys.modules
        from mmdet.apis import DetInferencer, inference_detector, init_detector
        inferencer = DetInferencer(model={DET!r}, weights={str(ckpt)!r}, device='cpu')
        result = inferencer({str(image)!r}, out_dir={str(tmp_path / 'out')!r})
        print('inferencer', len(result['predictions'][0]['labels']))
        model = init_detector({DET!r}, {str(ckpt)!r}, device='cpu')
        pred = inference_detector(model, {str(image)!r})
        print('init_detector', type(pred).__name__, pred.pred_instances.masks.shape[1:])
    ''')
    assert code == 0, log[-3000:]
    assert 'init_detector DetDataSample torch.Size([256, 256])' in log
    assert list((tmp_path / 'out' / 'vis').glob('*.jpg'))  # the picture of the predictions


@pytest.mark.slow
def test_seg_inferencer_and_init_model_load_a_training_checkpoint(seg_checkpoint, tmp_path):
    ckpt, image = seg_checkpoint
    code, log = _python(f'''
        import sys
        assert 'dinat_mm' not in sys.modules
        from mmseg.apis import MMSegInferencer, inference_model, init_model
        inferencer = MMSegInferencer(model={SEG!r}, weights={str(ckpt)!r}, device='cpu')
        result = inferencer({str(image)!r}, out_dir={str(tmp_path / 'out')!r})
        print('inferencer', tuple(result['predictions'].shape))
        model = init_model({SEG!r}, {str(ckpt)!r}, device='cpu')
        pred = inference_model(model, {str(image)!r})
        print('init_model', type(pred).__name__, tuple(pred.pred_sem_seg.data.shape))
    ''')
    assert code == 0, log[-3000:]
    assert 'inferencer (256, 256)' in log and 'init_model SegDataSample (1, 256, 256)' in log
    assert list((tmp_path / 'out' / 'vis').glob('*.jpg')) or list((tmp_path / 'out' / 'vis').glob('*.png'))


@pytest.mark.parametrize('api', ['DetInferencer', 'init_detector', 'MMSegInferencer', 'init_model'])
def test_inference_apis_refuse_a_code_running_pickle(api, malicious):
    path, marker = malicious
    config = DET if api in ('DetInferencer', 'init_detector') else SEG
    call = {'DetInferencer': f"DetInferencer(model={config!r}, weights={str(path)!r}, device='cpu')",
            'init_detector': f"init_detector({config!r}, {str(path)!r}, device='cpu')",
            'MMSegInferencer': f"MMSegInferencer(model={config!r}, weights={str(path)!r}, device='cpu')",
            'init_model': f"init_model({config!r}, {str(path)!r}, device='cpu')"}[api]
    module = 'mmdet.apis' if config == DET else 'mmseg.apis'
    code, log = _python(f'''
        from {module} import {api}
        {call}
    ''')
    assert code != 0 and 'Weights only load failed' in log, log[-3000:]
    assert 'posix.system' in log or 'os.system' in log
    assert not marker.exists()  # the command never ran
