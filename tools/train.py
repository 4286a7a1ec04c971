"""Train a detector or segmentor from a config (mmdet 3.x or mmseg 1.x; the config's default_scope
picks the library).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
"""
import argparse
import os
import sys

from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Train a DiNAT detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if none is given')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: float16 on GPU, bfloat16 autocast on CPU')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries, k=v')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    from mmengine.runner import Runner
    from dinat_mm import engine
    from dinat_mm.checkpoint import trusted_checkpoint_types
    try:
        cfg = engine.load_config(args.config, args.cfg_options)
        engine.set_work_dir(cfg, args.config, args.work_dir)
        engine.configure_launcher(cfg, args.launcher)
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
    with trusted_checkpoint_types():
        Runner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
