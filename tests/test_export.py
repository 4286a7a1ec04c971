"""dinat_mm.export and tools/export.py: ONNX graphs of standard operators that onnxruntime runs to PyTorch's outputs,
torch.export programs that hold na2d as the registered op, and the errors for bad input."""
import argparse
import os
import re
from pathlib import Path

import pytest
import torch

from mmengine.config import DictAction

from dinat_mm import export
from tests.helpers.tools import FEW_LAYERS, load_tool

REPO = Path(__file__).resolve().parents[1]
export_tool = load_tool('export')

TOY_SEG = str(REPO / 'configs/toy/upernet_dinat_mini_toy.py')
TOY_DET = str(REPO / 'configs/toy/maskrcnn_dinat_mini_toy.py')


def _few_layers() -> dict:
    """FEW_LAYERS as the dict that tools/export.py's --cfg-options makes of it."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *FEW_LAYERS]).cfg_options


def _random_checkpoint(config, path, seed=0, few_layers=True):
    """A training-style checkpoint of random weights, so the export must carry these weights (by
    default the toy config's model with FEW_LAYERS: export time grows with the layer count)."""
    torch.manual_seed(seed)
    model, _ = export.build(config, cfg_options=_few_layers() if few_layers else None)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, path)
    return model


def _onnx_outputs(path, image):
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'image': image.numpy()})


def _all_domains(path):
    import onnx
    model = onnx.load(str(path))
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    domains = {n.domain for n in nodes}
    for n in nodes:  # subgraphs (If / Loop bodies)
        for attr in n.attribute:
            if attr.g is not None:
                domains |= {m.domain for m in attr.g.node}
    return domains, {n.op_type for n in nodes}, list(model.functions)


@pytest.mark.slow
@pytest.mark.parametrize('shape,chunk', [((64, 64), None), ((48, 80), 50)])
def test_segmentor_onnx_matches_pytorch_and_uses_standard_operators(tmp_path, shape, chunk):
    checkpoint = tmp_path / 'seg.pth'
    model = _random_checkpoint(TOY_SEG, checkpoint)
    out = tmp_path / 'seg.onnx'
    export_tool.main([TOY_SEG, str(checkpoint), '--out', str(out), '--part', 'model', '--shape', *map(str, shape)]
                     + (['--chunk', str(chunk)] if chunk else []) + ['--cfg-options', *FEW_LAYERS])
    image = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the model with the checkpoint's weights, built here, eager, default backend
        want = export.Part(model.eval(), 'model')(image)
    got = _onnx_outputs(out, image)
    assert got[0].shape == (1, 5, *shape)
    assert export.relative_error(got, want) < 1e-4
    domains, ops, functions = _all_domains(out)
    assert domains <= {'', 'ai.onnx'} and not functions, domains
    assert {'Gather', 'MatMul', 'Softmax'} <= ops
    assert sorted(os.listdir(tmp_path)) == ['seg.onnx', 'seg.pth']  # no temporary file left


@pytest.mark.slow
def test_detector_features_and_backbone_onnx_match_pytorch(tmp_path):
    checkpoint = tmp_path / 'det.pth'
    model = _random_checkpoint(TOY_DET, checkpoint, seed=1).eval()
    image = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    for part, levels in (('features', 5), ('backbone', 4)):  # FPN's 5 levels, DiNAT's 4
        out = tmp_path / f'{part}.onnx'
        export_tool.main([TOY_DET, str(checkpoint), '--out', str(out), '--part', part, '--shape', '64', '96',
                          '--cfg-options', *FEW_LAYERS])
        with torch.no_grad():
            want = export.Part(model, part)(image)
        got = _onnx_outputs(out, image)
        assert len(got) == levels and [g.shape for g in got] == [tuple(w.shape) for w in want]
        assert export.relative_error(got, want) < 1e-4


@pytest.mark.slow
def test_torch_export_holds_the_registered_op_and_round_trips(tmp_path):
    checkpoint = tmp_path / 'det.pth'
    model = _random_checkpoint(TOY_DET, checkpoint, seed=2)
    out = tmp_path / 'backbone.pt2'
    export_tool.main([TOY_DET, str(checkpoint), '--out', str(out), '--format', 'torch-export', '--part', 'backbone',
                      '--shape', '64', '64', '--cfg-options', *FEW_LAYERS])
    program = torch.export.load(str(out))
    targets = [str(n.target) for n in program.graph.nodes if n.op == 'call_function']
    assert targets.count('dinat_mm.na2d_cpu_forward.default') == sum(model.backbone.depths)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = export.Part(model.eval(), 'backbone')(image)
        got = program.module()(image)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _error(argv):
    with pytest.raises(SystemExit) as info:
        export_tool.main(argv)
    return str(info.value.code)


def test_bad_inputs_are_errors_that_name_them(tmp_path, capsys):
    out = str(tmp_path / 'x.onnx')
    assert 'checkpoint not found: nowhere.pth' in _error([TOY_SEG, 'nowhere.pth', '--out', out])
    assert 'config file not found: nowhere.py' in _error(['nowhere.py', '--out', out])
    other = tmp_path / 'other.py'
    other.write_text("default_scope = 'mmocr'\nmodel = dict(type='X')\n")
    assert "default_scope must be one of 'mmdet', 'mmseg', 'mmpretrain', got 'mmocr'" in _error([str(other), '--out', out])
    assert 'belongs to mmdeploy' in _error([TOY_DET, '--out', out, '--part', 'model'])
    assert '--dynamic is not supported' in _error([TOY_SEG, '--out', out, '--dynamic'])
    assert '--shape must be positive' in _error([TOY_SEG, '--out', out, '--shape', '0', '64'])
    assert '--chunk must be >= 1, got 0' in _error([TOY_SEG, '--out', out, '--chunk', '0'])
    assert f'--out {tmp_path}/missing/x.onnx: cannot write there' in _error(
        [TOY_SEG, '--out', str(tmp_path / 'missing' / 'x.onnx')])
    with pytest.raises(SystemExit):  # argparse names the argument and its choices
        export_tool.main([TOY_SEG, '--out', out, '--part', 'head'])
    assert "--part: invalid choice: 'head'" in capsys.readouterr().err
    marker = tmp_path / 'marker'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))
    torch.save({'state_dict': {}, 'x': Payload()}, tmp_path / 'evil.pth')
    assert 'evil.pth' in _error([TOY_SEG, str(tmp_path / 'evil.pth'), '--out', out])
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ['evil.pth', 'other.py']  # nothing written


@pytest.mark.slow
def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        Path(args[2]).write_bytes(b'half')
        raise RuntimeError('exporter failed midway')
    monkeypatch.setattr(export_tool, 'export_onnx', fail)
    with pytest.raises(RuntimeError, match='midway'):
        export_tool.main([TOY_SEG, '--out', str(tmp_path / 'x.onnx'), '--shape', '32', '32'])
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_check_gives_the_same_miou_in_onnxruntime_as_in_pytorch(tmp_path, capsys):
    from dinat_mm.toydata import make_toy_ade
    data = make_toy_ade(tmp_path / 'toy_ade', num_train=1, num_val=3, seed=5)
    checkpoint = tmp_path / 'seg.pth'
    _random_checkpoint(TOY_SEG, checkpoint, seed=3, few_layers=False)  # its random predictions score above 0
    capsys.readouterr()
    export_tool.main([TOY_SEG, str(checkpoint), '--out', str(tmp_path / 'seg.onnx'), '--part', 'model',
                      '--shape', '128', '128', '--check', str(data)])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('mIoU on'))
    pytorch, ort = (float(v) for v in re.findall(r'(?:PyTorch|onnxruntime) (\d+\.\d+)', line))
    assert abs(pytorch - ort) <= 0.1 and pytorch > 0
    assert 'is (128, 128) after the test pipeline' not in line
    assert 'exported at --shape 96 96' in _error([TOY_SEG, str(checkpoint), '--out', str(tmp_path / 'b.onnx'),
                                                  '--part', 'model', '--shape', '96', '96', '--check', str(data)])
    assert '--check evaluates a whole segmentor' in _error([TOY_DET, '--out', str(tmp_path / 'c.onnx'),
                                                          '--check', str(data)])
