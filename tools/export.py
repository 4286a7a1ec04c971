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

import torch
from mmengine.config import DictAction

from dinat_mm.checkpoint import require_checkpoint
from dinat_mm.errors import UserError
from dinat_mm.export import (FORMATS, PARTS, Part, build, check_segmentation, export_onnx, export_program,
                             use_attention_backend)
from dinat_mm.fileio import written_atomically


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
            raise UserError(
                "--dynamic is not supported: na2d's neighbour tables (natten's border rule shifts the windows "
                'at the edges) depend on each level\'s map size, so an exported graph serves one input size; '
                'export one file per size with --shape H W')
        if args.chunk is not None and args.chunk < 1:
            raise UserError(f'--chunk must be >= 1, got {args.chunk}')
        if min(args.shape) < 1:
            raise UserError(f'--shape must be positive, got {args.shape[0]} {args.shape[1]}')
        folder = osp.dirname(osp.abspath(args.out))
        if not osp.isdir(folder) or not os.access(folder, os.W_OK):
            raise UserError(f'--out {args.out}: cannot write there (the folder {folder} does not exist '
                                   'or is not writable)')
        if args.checkpoint:
            require_checkpoint(args.checkpoint)
        model, scope = build(args.config, args.checkpoint, args.cfg_options)
        if args.part == 'model' and scope == 'mmdet':
            raise UserError(
                '--part model: whole-detector export, with its NMS and RoIAlign, belongs to mmdeploy; '
                'export --part features (backbone + neck, the detector\'s extract_feat) instead')
        if args.check and (scope != 'mmseg' or args.format != 'onnx' or args.part != 'model'):
            raise UserError('--check evaluates a whole segmentor in onnxruntime: it needs an mmseg config, '
                                   '--format onnx and --part model')
        module = Part(model, args.part).eval()
        image = torch.randn(1, 3, *args.shape, generator=torch.Generator().manual_seed(0))
        with written_atomically(args.out) as partial:
            (export_onnx if args.format == 'onnx' else export_program)(module, image, partial, args.chunk)
        print(f'wrote {args.out} ({args.format}, part {args.part}, input 1x3x{args.shape[0]}x{args.shape[1]})')
        if args.check:
            use_attention_backend(model, 'auto')  # PyTorch's side as tools/test.py runs it
            miou = check_segmentation(model, args.config, args.cfg_options, args.out, args.check, args.shape)
            print(f"mIoU on {args.check}: PyTorch {miou['pytorch']:.2f}, onnxruntime {miou['onnxruntime']:.2f}")
    except UserError as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
