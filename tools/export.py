"""Export a DiNAT model to ONNX (standard operators only) or to a torch.export program.

    python tools/export.py CONFIG [CHECKPOINT] --out FILE [--format onnx|torch-export]
                           [--shape H W] [--dynamic] [--part backbone|features|model]

- ``--part backbone``: the backbone's multi-scale outputs; ``features``: backbone + neck (the
  detector's or segmentor's ``extract_feat``); ``model``: for mmseg configs the whole segmentor,
  from the normalised image to the logits at the input size. Whole-detector export (NMS, RoIAlign)
  belongs to mmdeploy: for mmdet configs export the features.
- ONNX: na2d is lowered to gathers, matmuls and a softmax (``attn_backend='gather'``); the graph
  has no custom domain. It serves the ``--shape`` it was exported at: the neighbour tables of
  natten's border rule depend on the map size, so ``--dynamic`` is refused.
- torch-export: an ExportedProgram (``torch.export.save``) that holds na2d as the registered op
  ``dinat_mm::na2d_cpu_forward``; ``import dinat_mm`` before ``torch.export.load``.
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
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules()
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


def export_onnx(module: Part, image: torch.Tensor, path: str) -> None:
    import onnxruntime
    use_attention_backend(module, 'gather')
    with torch.no_grad():
        want = module(image)
    names = [f'{module.part}_{i}' for i in range(len(want))]
    torch.onnx.export(module, (image,), path, input_names=['image'], output_names=names, dynamo=True,
                      external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': image.numpy()})
    print(f'onnxruntime vs PyTorch eager: largest deviation {relative_error(got, want):.2e} of the output range')


def export_program(module: Part, image: torch.Tensor, path: str) -> None:
    with torch.no_grad():
        want = module(image)
        program = torch.export.export(module, (image,))
        torch.export.save(program, path)
        got = torch.export.load(path).module()(image)
    print(f'torch.export program vs PyTorch eager: largest deviation {relative_error(got, want):.2e} '
          'of the output range')


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
        module = Part(model, args.part).eval()
        image = torch.randn(1, 3, *args.shape, generator=torch.Generator().manual_seed(0))
        handle, tmp = tempfile.mkstemp(prefix='.' + osp.basename(args.out) + '.', dir=folder)
        os.close(handle)
        try:
            (export_onnx if args.format == 'onnx' else export_program)(module, image, tmp)
            os.replace(tmp, args.out)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        print(f'wrote {args.out} ({args.format}, part {args.part}, input 1x3x{args.shape[0]}x{args.shape[1]})')
    except (engine.UserError, CheckpointError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
