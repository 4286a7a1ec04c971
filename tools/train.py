"""Train a classifier, detector or segmentor from a config (mmpretrain 1.x, mmdet 3.x or mmseg 1.x;
the config's default_scope picks the library).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [force]] [--cfg-options k=v ...]

Checkpoints are written atomically (dinat_mm.runner.AtomicCheckpointHook): a run killed at any
moment, even during a save, continues with --resume from the newest checkpoint that loads.
"""
import argparse
import sys

from mmengine.runner import Runner

from dinat_mm.checkpoint import load_checkpoint_file, trusted_checkpoint_types
from dinat_mm.cli import checks, config
from dinat_mm.cli.classifier_checkpoint import convert_load_from
from dinat_mm.cli.resume import resume_point
from dinat_mm.errors import UserError


def main():
    parser = argparse.ArgumentParser(description='Train a DiNAT classifier, detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if none is given')
    parser.add_argument('--amp', nargs='?', const='on', choices=['on', 'force'],
                        help='mixed precision: float16 on GPU, bfloat16 autocast on CPU; refused on a CPU without '
                             'native bfloat16 (emulated, many times slower) unless --amp force')
    config.add_common_arguments(parser)
    args = parser.parse_args()
    try:
        cfg = config.prepare(args)
        if args.amp:
            config.enable_amp(cfg, force=args.amp == 'force')
        config.make_checkpoints_atomic(cfg)
        if args.resume == 'auto':
            found = resume_point(cfg.work_dir, load_checkpoint_file,
                                         lambda msg: print(f'warning: {msg}', file=sys.stderr))
            if found is not None:
                cfg.resume, cfg.load_from = True, found
            else:  # a first run: start as without --resume (from the config's load_from, if any)
                cfg.resume = False
        elif args.resume:
            load_checkpoint_file(args.resume)  # names a missing or truncated file before the run starts
            cfg.resume, cfg.load_from = True, args.resume
        convert_load_from(cfg)  # a classifier's load_from in the release's or Hugging Face's layout
        checks.check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader'])
        checks.check_class_folders(cfg, ['train_dataloader', 'val_dataloader'])
        validates = cfg.get('val_cfg') is not None and cfg.get('val_dataloader') is not None
        if validates:
            checks.check_evaluators(cfg, ['val_evaluator'])
        checks.check_panopticapi(cfg, ['train_dataloader'] + (['val_dataloader', 'val_evaluator'] if validates else []))
    except UserError as err:
        sys.exit(f'error: {err}')
    with trusted_checkpoint_types():  # mmengine's own torch.load of this project's checkpoints
        Runner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
