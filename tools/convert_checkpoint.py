"""Convert DiNAT checkpoints.

    python tools/convert_checkpoint.py SRC DST [--whole [--config CONFIG]] [--trust-source]

- Default: any backbone layout (the release's ImageNet classifiers, Hugging Face shi-labs/dinat-*
  model.safetensors or pytorch_model.bin, detector/segmentor checkpoints' backbone part) becomes a
  dinat_mm backbone checkpoint: DST ending in .safetensors, or a weights-only .pth.
- --whole with an ImageNet classifier (the release's, Hugging Face's Dinat/NatForImageClassification
  or DinatModel, or an mmpretrain one): the whole mmpretrain ImageClassifier ({'state_dict', 'meta'}:
  backbone, the final norm as the backbone's last output norm, the head as head.fc) for
  tools/test.py, load_from or init_cfg. With --config CONFIG (a configs/imagenet/ config) it is
  checked against that model first: a head of another class count is refused.
- --whole: a whole detector/segmentor checkpoint of the DiNAT release (mmdet 2.x / mmseg 0.x:
  Mask R-CNN, Cascade Mask R-CNN, UPerNet) becomes a weights-only mmdet 3.x / mmseg 1.x checkpoint
  ({'state_dict', 'meta'}) for tools/test.py or load_from; DST must be a .pth (mmengine reads no
  safetensors). The parameter names of these heads did
  not change between those versions; optimizer state and non-tensor metadata are dropped.
- --whole --config CONFIG: a detectron2 Mask2Former checkpoint of the release
  (mask2former_dinat_large_*.pth) becomes the mmdet/mmseg Mask2Former of CONFIG (one of
  configs/mask2former_dinat_large_*.py): keys renamed, ADE20K panoptic classes reordered, and the
  result checked against the model built from CONFIG (every key, every shape) before DST is written.
- --trust-source: unpickle SRC fully (it can run code!) for a trusted file that the safe loader
  refuses; the output is plain tensors either way.
"""
import argparse
import os
import sys

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint file or http(s) URL')
    parser.add_argument('dst', help='output file (.safetensors or .pth)')
    parser.add_argument('--whole', action='store_true',
                        help='keep the whole classifier, detector or segmentor, not only the backbone')
    parser.add_argument('--config', help='with --whole: the config the checkpoint is for (needed for a detectron2 '
                        'Mask2Former; checks a classifier)')
    parser.add_argument('--trust-source', action='store_true', help='full unpickle of SRC (only for trusted files)')
    args = parser.parse_args(argv)

    from dinat_mm.checkpoint import (CheckpointError, is_mmpretrain_classifier, read_checkpoint, to_backbone,
                                     to_classifier, unwrap)
    from dinat_mm.checkpoint.mask2former import is_detectron2_mask2former
    from dinat_mm.errors import UserError
    from dinat_mm.fileio import written_atomically
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
            detector = any(k.startswith('backbone.') for k in state) and not is_mmpretrain_classifier(state)
            report = dict(layout='detector', dropped=[])
            if is_detectron2_mask2former(state):
                if not args.config:
                    raise CheckpointError(f'{args.src} is a detectron2 Mask2Former checkpoint: give --config, the '
                                          'configs/mask2former_dinat_large_*.py it is for')
                state, dropped = mask2former_for_config(state, args.config)
                report = dict(layout='detectron2 Mask2Former', dropped=dropped)
            elif args.config:
                state, report = classifier_for_config(checkpoint, args.config, args.src)
            elif not detector:
                try:
                    state, report = to_classifier(checkpoint)
                except CheckpointError as err:
                    raise CheckpointError(f'{args.src}: {err}') from None
        elif args.config:
            raise CheckpointError('--config is used only with --whole')
        else:
            state, report = to_backbone(checkpoint)
    except UserError as err:
        sys.exit(f'error: {err}')
    state = {k: v.contiguous() for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    with written_atomically(args.dst) as partial:
        if args.whole:
            torch.save(dict(state_dict=state, meta=dict(converted_from=os.path.basename(args.src))), partial)
        elif args.dst.endswith('.safetensors'):
            from safetensors.torch import save_file
            save_file(state, partial, metadata=dict(format='pt', source_layout=report['layout']))
        else:
            torch.save(state, partial)
    print(f'{args.src} ({report["layout"]} layout) -> {args.dst}: {len(state)} tensors, '
          f'{len(report["dropped"])} dropped {report["dropped"][:5]}')


def classifier_for_config(checkpoint, config, name):
    """A classifier checkpoint as the mmpretrain model of ``config`` names it, checked against it."""
    from dinat_mm.checkpoint import CheckpointError, classifier_state
    from dinat_mm.cli.config import load_config, meta_model_state
    cfg = load_config(config)
    if cfg.default_scope != 'mmpretrain':
        raise CheckpointError(f'{config} is not an mmpretrain (classification) config')
    return classifier_state(checkpoint, meta_model_state(cfg), name)


def mask2former_for_config(state, config):
    """The detectron2 Mask2Former state dict as the model of ``config`` names it, checked against
    that model built from the config."""
    from dinat_mm.checkpoint import CheckpointError
    from dinat_mm.checkpoint.mask2former import ade20k_panoptic_order, from_detectron2
    from dinat_mm.cli.config import load_config, meta_model_state
    cfg = load_config(config)
    head = dict(mmdet='panoptic_head', mmseg='decode_head').get(cfg.get('default_scope'))
    if head is None or 'Mask2Former' not in str(cfg.model.get(head, {}).get('type')):
        raise CheckpointError(f'{config} is not an mmdet/mmseg Mask2Former config')
    dataset = cfg.train_dataloader.dataset.get('type')
    order = ade20k_panoptic_order() if dataset == 'ADE20KPanopticDataset' else None
    converted, dropped = from_detectron2(state, head, order)
    want = {k: v.shape for k, v in meta_model_state(cfg).items()}
    missing, unexpected = sorted(set(want) - set(converted)), sorted(set(converted) - set(want))
    wrong = [f'{k} {tuple(v.shape)} vs {tuple(want[k])}' for k, v in converted.items()
             if k in want and v.shape != want[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(f'the converted checkpoint does not fit {config}: missing {missing[:5]}, '
                              f'unexpected {unexpected[:5]}, shapes {wrong[:5]} (is it the checkpoint of '
                              'this task?)')
    return converted, dropped


if __name__ == '__main__':
    main()
