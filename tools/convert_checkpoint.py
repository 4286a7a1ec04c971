"""Convert DiNAT checkpoints.

    python tools/convert_checkpoint.py SRC DST [--whole] [--trust-source]

- Default: any backbone layout (the release's ImageNet classifiers, Hugging Face shi-labs/dinat-*
  model.safetensors or pytorch_model.bin, detector/segmentor checkpoints' backbone part) becomes a
  dinat_mm backbone checkpoint: DST ending in .safetensors, or a weights-only .pth.
- --whole: a whole detector/segmentor checkpoint of the DiNAT release (mmdet 2.x / mmseg 0.x:
  Mask R-CNN, Cascade Mask R-CNN, UPerNet) becomes a weights-only mmdet 3.x / mmseg 1.x checkpoint
  ({'state_dict', 'meta'}) for tools/test.py or load_from; DST must be a .pth (mmengine reads no
  safetensors). The parameter names of these heads did
  not change between those versions; optimizer state and non-tensor metadata are dropped.
- --trust-source: unpickle SRC fully (it can run code!) for a trusted file that the safe loader
  refuses; the output is plain tensors either way.
"""
import argparse
import os
import sys

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint file or http(s) URL')
    parser.add_argument('dst', help='output file (.safetensors or .pth)')
    parser.add_argument('--whole', action='store_true', help='keep the whole detector/segmentor, not only the backbone')
    parser.add_argument('--trust-source', action='store_true', help='full unpickle of SRC (only for trusted files)')
    args = parser.parse_args()

    from dinat_mm.checkpoint import CheckpointError, read_checkpoint, to_backbone, unwrap
    if args.whole and args.dst.endswith('.safetensors'):
        sys.exit(f'error: --whole cannot write {args.dst}: tools/test.py and mmengine\'s load_from read only '
                 "torch checkpoints ({'state_dict', 'meta'}), not safetensors; give DST a .pth name")
    try:
        if args.trust_source:
            checkpoint = torch.load(args.src, map_location='cpu', weights_only=False)
        else:
            checkpoint = read_checkpoint(args.src)
        if args.whole:
            state = unwrap(checkpoint)
            if not any(k.startswith('backbone.') for k in state):
                raise CheckpointError(f'{args.src}: --whole needs a detector/segmentor checkpoint (backbone.* keys)')
            report = dict(layout='detector', dropped=[])
        else:
            state, report = to_backbone(checkpoint)
    except CheckpointError as err:
        sys.exit(f'error: {err}')
    state = {k: v.contiguous() for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.part'  # never leave a half-written DST
    if args.whole:
        torch.save(dict(state_dict=state, meta=dict(converted_from=os.path.basename(args.src))), tmp)
    elif args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(state, tmp, metadata=dict(format='pt', source_layout=report['layout']))
    else:
        torch.save(state, tmp)
    os.replace(tmp, args.dst)
    print(f'{args.src} ({report["layout"]} layout) -> {args.dst}: {len(state)} tensors, '
          f'{len(report["dropped"])} dropped {report["dropped"][:5]}')


if __name__ == '__main__':
    main()
