"""Export a DiNAT model to ONNX (standard operators only) or to a torch.export program.

    python tools/export.py CONFIG [CHECKPOINT] --out FILE [--format onnx|torch-export]
                           [--shape H W] [--dynamic] [--part backbone|features|model] [--chunk N]
                           [--check DATA]

- ``--part backbone``: the backbone's multi-scale outputs; ``features``: backbone + neck (the
  detector's or segmentor's ``extract_feat``); ``model``: for mmseg configs the whole segmentor,
  from the normalised image to the logits at the input size. Whole-detector export (NMS, RoIAlign)
  belongs to mmdeploy: for mmdet configs export the features.
- ONNX: na2d is lowered to gathers, matmuls and a softmax (``attn_backend='gather'``; ``--chunk N``
  for the leaner form); the graph has no custom domain. It serves the ``--shape`` it was exported
  at: the neighbour tables of natten's border rule depend on the map size, so ``--dynamic`` is
  refused.
- torch-export: an ExportedProgram (``torch.export.save``) that holds na2d as the registered op
  ``dinat_mm::na2d_cpu_forward``; ``import dinat_mm`` before ``torch.export.load``.
- ``--check DATA`` (mmseg, ONNX, ``--part model``): evaluate the exported graph in onnxruntime and
  the PyTorch model (as tools/test.py does) on the test split of the dataset at DATA, with the
  config's test pipeline and IoUMetric, and print both mIoUs.
- The checkpoint is read by the project's safe loader. The export is checked against eager
  PyTorch on a random input before the file is put in place (written to a temporary file beside
  it, then renamed: nothing half-written is left behind).
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

import torch
import torch.nn.functional as F
from mmengine.config import DictAction

from dinat_mm import engine
from dinat_mm.checkpoint import CheckpointError, load_checkpoint_file

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
    import dinat_mm  # noqa: F401  (registers DiNAT)
    from mmengine.model import revert_sync_batchnorm
    cfg = engine.load_config(config, cfg_options)
    scope = cfg.default_scope
    MODELS = engine.model_registry(cfg)
    cfg.model.backbone.init_cfg = None  # weights come from CHECKPOINT, not the ImageNet URL
    cfg.model.backbone.pop('pretrained', None)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint:
        engine.check_checkpoint_matches(model, checkpoint)  # names the file if missing or foreign
        state = load_checkpoint_file(checkpoint)
        state = state.get('state_dict', state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise engine.UserError(f'checkpoint {checkpoint} does not fit the model of {config}: {exc}') from exc
    return model.eval(), scope


def use_attention_backend(model: torch.nn.Module, backend: str) -> None:
    from dinat_mm.models.dinat import NeighborhoodAttention2D
    for module in model.modules():
        if isinstance(module, NeighborhoodAttention2D):
            module.backend = backend


def relative_error(got, want) -> float:
    """Largest deviation of any output, relative to that output's range."""
    return max(float((torch.as_tensor(a).float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))
               for a, b in zip(got, want))


def export_onnx(module: Part, image: torch.Tensor, path: str, chunk: int = None) -> None:
    import onnxruntime

    from dinat_mm.ops import gather_backend
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
    import copy

    import onnxruntime
    from mmengine.dataset import pseudo_collate
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import DATASETS
    cfg = engine.load_config(config, cfg_options)
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.data_root = data_root
    engine.check_dataset_paths(dict(test_dataloader=dict(dataset=dataset_cfg)), ['test_dataloader'])
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
            raise engine.UserError(
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='an mmdet 3.x or mmseg 1.x config with a DiNAT backbone')
    parser.add_argument('checkpoint', nargs='?', help="weights (this project's training checkpoints)")
    parser.add_argument('--out', required=True, help='the file to write (.onnx or .pt2)')
    parser.add_argument('--format', choices=FORMATS, default='onnx')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'),
                        help='input height and width (default 512 512)')
    parser.add_argument('--dynamic', action='store_true', help='symbolic height and width (refused: see --help)')
    parser.add_argument('--part', choices=PARTS, default='features')
    parser.add_argument('--chunk', type=int, metavar='N',
                        help='ONNX: gather the neighbours of at most N queries at a time (the leaner form: the '
                             'gathered keys and values are otherwise k^2 times the inputs); default all at once')
    parser.add_argument('--check', metavar='DATA',
                        help="mmseg, ONNX, --part model: mIoU of onnxruntime and of PyTorch on DATA's test split")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries, k=v')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.dynamic:
            raise engine.UserError(
                "--dynamic is not supported: na2d's neighbour tables (natten's border rule shifts the windows "
                'at the edges) depend on each level\'s map size, so an exported graph serves one input size; '
                'export one file per size with --shape H W')
        if args.chunk is not None and args.chunk < 1:
            raise engine.UserError(f'--chunk must be >= 1, got {args.chunk}')
        if min(args.shape) < 1:
            raise engine.UserError(f'--shape must be positive, got {args.shape[0]} {args.shape[1]}')
        folder = osp.dirname(osp.abspath(args.out))
        if not osp.isdir(folder) or not os.access(folder, os.W_OK):
            raise engine.UserError(f'--out {args.out}: cannot write there (the folder {folder} does not exist '
                                   'or is not writable)')
        if args.checkpoint and not osp.isfile(args.checkpoint):
            raise engine.UserError(f'checkpoint not found: {args.checkpoint}')
        model, scope = build(args.config, args.checkpoint, args.cfg_options)
        if args.part == 'model' and scope == 'mmdet':
            raise engine.UserError(
                '--part model: whole-detector export, with its NMS and RoIAlign, belongs to mmdeploy; '
                'export --part features (backbone + neck, the detector\'s extract_feat) instead')
        if args.check and (scope != 'mmseg' or args.format != 'onnx' or args.part != 'model'):
            raise engine.UserError('--check evaluates a whole segmentor in onnxruntime: it needs an mmseg config, '
                                   '--format onnx and --part model')
        module = Part(model, args.part).eval()
        image = torch.randn(1, 3, *args.shape, generator=torch.Generator().manual_seed(0))
        handle, tmp = tempfile.mkstemp(prefix='.' + osp.basename(args.out) + '.', dir=folder)
        os.close(handle)
        try:
            (export_onnx if args.format == 'onnx' else export_program)(module, image, tmp, args.chunk)
            os.replace(tmp, args.out)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        print(f'wrote {args.out} ({args.format}, part {args.part}, input 1x3x{args.shape[0]}x{args.shape[1]})')
        if args.check:
            use_attention_backend(model, 'auto')  # PyTorch's side as tools/test.py runs it
            miou = check_segmentation(model, args.config, args.cfg_options, args.out, args.check, args.shape)
            print(f"mIoU on {args.check}: PyTorch {miou['pytorch']:.2f}, onnxruntime {miou['onnxruntime']:.2f}")
    except (engine.UserError, CheckpointError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
