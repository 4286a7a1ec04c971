"""mmdet's and mmseg's inference APIs on checkpoints written by tools/train.py, in fresh interpreters
(only the config's custom_imports imports dinat_mm), and their refusal of a code-running pickle."""
import pytest
import torch

from tests.helpers.tools import DET_TOY as DET
from tests.helpers.tools import SEG_TOY as SEG
from tests.helpers.tools import run_python


def _python(script):
    run = run_python('-c', script, ok=False)
    return run.code, run.log


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
def test_det_inferencer_and_init_detector_load_a_training_checkpoint(det_checkpoint, toy_coco, tmp_path):
    ckpt, image = det_checkpoint, next((toy_coco / 'val').glob('*.jpg'))
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
def test_seg_inferencer_and_init_model_load_a_training_checkpoint(seg_checkpoint, toy_ade, tmp_path):
    ckpt, image = seg_checkpoint, next((toy_ade / 'images' / 'validation').glob('*.jpg'))
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


@pytest.mark.slow
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
