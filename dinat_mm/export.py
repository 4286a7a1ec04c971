"""Export a DiNAT model (backbone, features or whole segmentor) to ONNX with standard operators
only, or to a torch.export program, each checked against eager PyTorch; and the mIoU of an
exported segmentor beside PyTorch's. ``tools/export.py`` is the command line."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint_file
from .cli import checks
from .cli.config import load_config
from .errors import UserError
from .registry import scope_models

PARTS = ('backbone', 'features', 'model')
FORMATS = ('onnx', 'torch-export')


class Part(torch.nn.Module):
    """The exported computation: image [N, 3, H, W] -> a tuple of tensors."""

    def __init__(self, model: torch.nn.Module, part: str):
        super().__init__()
        self.model, self.part = model, part

    def forward(self, image: torch.Tensor):
        if self.part == 'backbone':
            return tuple(self.model.backbone(image))
        if self.part == 'features':
            return tuple(self.model.extract_feat(image))
        head = self.model.decode_head
        logits = head(self.model.extract_feat(image))
        return (F.interpolate(logits, size=image.shape[2:], mode='bilinear', align_corners=head.align_corners),)


def build(config: str, checkpoint: str = None, cfg_options=None) -> tuple:
    """(model in eval mode, scope) from a config, with the checkpoint's weights if given."""
    from mmengine.model import revert_sync_batchnorm
    cfg = load_config(config, cfg_options)
    scope = cfg.default_scope
    MODELS = scope_models(scope)
    cfg.model.backbone.init_cfg = None  # weights come from CHECKPOINT, not the ImageNet URL
    cfg.model.backbone.pop('pretrained', None)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint:
        checks.check_checkpoint_matches(model, checkpoint)  # names the file if missing or foreign
        state = load_checkpoint_file(checkpoint)
        state = state.get('state_dict', state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise UserError(f'checkpoint {checkpoint} does not fit the model of {config}: {exc}') from exc
    return model.eval(), scope


def use_attention_backend(model: torch.nn.Module, backend: str) -> None:
    from .models.layers import NeighborhoodAttention2D
    for module in model.modules():
        if isinstance(module, NeighborhoodAttention2D):
            module.backend = backend


def relative_error(got, want) -> float:
    """Largest deviation of any output, relative to that output's range."""
    return max(float((torch.as_tensor(a).float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))
               for a, b in zip(got, want))


def export_onnx(module: Part, image: torch.Tensor, path: str, chunk: int = None) -> None:
    import onnxruntime

    from .ops import gather_backend
    use_attention_backend(module, 'gather')
    with torch.no_grad():
        want = module(image)
    names = [f'{module.part}_{i}' for i in range(len(want))]
    with gather_backend.chunked(chunk):
        torch.onnx.export(module, (image,), path, input_names=['image'], output_names=names, dynamo=True,
                          external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': image.numpy()})
    print(f'onnxruntime vs PyTorch eager: largest deviation {relative_error(got, want):.2e} of the output range')


def export_program(module: Part, image: torch.Tensor, path: str, chunk: int = None) -> None:
    with torch.no_grad():
        want = module(image)
        program = torch.export.export(module, (image,))
        torch.export.save(program, path)
        got = torch.export.load(path).module()(image)
    print(f'torch.export program vs PyTorch eager: largest deviation {relative_error(got, want):.2e} '
          'of the output range')


def check_segmentation(model, config: str, cfg_options, onnx_path: str, data_root: str, shape) -> dict:
    """mIoU of the PyTorch segmentor (``predict``, as tools/test.py runs it) and of the ONNX graph in
    onnxruntime (its logits through the same post-processing) on the test split at ``data_root``."""
    import onnxruntime
    from mmengine.dataset import pseudo_collate
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import DATASETS
    cfg = load_config(config, cfg_options)
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.data_root = data_root
    checks.check_dataset_paths(dict(test_dataloader=dict(dataset=dataset_cfg)), ['test_dataloader'])
    dataset = DATASETS.build(dataset_cfg)
    session = onnxruntime.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    metrics = {}
    for name in ('pytorch', 'onnxruntime'):
        metrics[name] = IoUMetric(iou_metrics=['mIoU'])
        metrics[name].dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        data = model.data_preprocessor(pseudo_collate([dataset[index]]), False)
        inputs, samples = data['inputs'], data['data_samples']
        if tuple(samples[0].img_shape) != tuple(shape) or tuple(inputs.shape[2:]) != tuple(shape):
            raise UserError(
                f'--check: image {index} of {data_root} is {tuple(inputs.shape[2:])} after the test pipeline '
                f'(image part {tuple(samples[0].img_shape)}), but the graph was exported at --shape {shape[0]} '
                f'{shape[1]}: export at the size the test pipeline gives')
        with torch.no_grad():
            predictions = {'pytorch': model.predict(inputs, copy.deepcopy(samples))}
        logits = torch.from_numpy(session.run(None, {'image': inputs.numpy()})[0])
        predictions['onnxruntime'] = model.postprocess_result(logits, copy.deepcopy(samples))
        for name, prediction in predictions.items():
            metrics[name].process({}, [p.to_dict() for p in prediction])
    return {name: metric.compute_metrics(metric.results)['mIoU'] for name, metric in metrics.items()}


