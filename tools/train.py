"""Train a detector or segmentor from a config (mmdet 3.x or mmseg 1.x; the config's default_scope
picks the library).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
"""
import argparse
import os
import sys

from mmengine.runner import Runner

from dinat_mm import engine
from dinat_mm.checkpoint import trusted_checkpoint_types


def main():
    parser = argparse.ArgumentParser(description='Train a DiNAT detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if none is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision: float16 on GPU, bfloat16 autocast on CPU')
    engine.add_common_arguments(parser)
    args = parser.parse_args()
    try:
        cfg = engine.prepare(args)
        if args.amp:
            engine.enable_amp(cfg)
        if args.resume == 'auto':
            cfg.resume, cfg.load_from = True, None
        elif args.resume:
            if not os.path.isfile(args.resume):
                raise engine.UserError(f'checkpoint to resume from not found: {args.resume}')
            cfg.resume, cfg.load_from = True, args.resume
        engine.check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader'])
    except engine.UserError as err:
        sys.exit(f'error: {err}')
    with trusted_checkpoint_types():  # mmengine's own torch.load of this project's checkpoints
        Runner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
