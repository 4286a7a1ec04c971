"""Evaluate a checkpoint (mmdet 3.x or mmseg 1.x; the config's default_scope picks the library).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--show-dir DIR]
                         [--tta] [--cfg-options k=v ...]
"""
import argparse
import os
import sys

from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Evaluate a DiNAT detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (this project\'s training writes them)')
    parser.add_argument('--work-dir', help='where logs and metrics go (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='write pictures of the predictions to this folder')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (the config\'s tta_model and tta_pipeline)')
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
    from dinat_mm.checkpoint import CheckpointError, trusted_checkpoint_types
    try:
        cfg = engine.load_config(args.config, args.cfg_options)
        engine.set_work_dir(cfg, args.config, args.work_dir)
        engine.configure_launcher(cfg, args.launcher)
        cfg.load_from = args.checkpoint
        if args.show_dir:
            engine.enable_visualization(cfg, os.path.abspath(args.show_dir))
        if args.out:
            engine.add_dump_results(cfg, args.out)
        if args.tta:
            engine.enable_tta(cfg)
        engine.check_dataset_paths(cfg, ['test_dataloader'])
        with trusted_checkpoint_types():
            runner = Runner.from_cfg(cfg)
            engine.check_checkpoint_matches(runner.model, args.checkpoint)
            runner.test()
    except (engine.UserError, CheckpointError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
