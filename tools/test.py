"""Evaluate a checkpoint (mmdet 3.x, mmseg 1.x or mmpretrain 1.x; the config's default_scope picks
the library). A classifier checkpoint of the DiNAT release or Hugging Face is converted whole first.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--show-dir DIR]
                         [--tta] [--cfg-options k=v ...]
"""
import argparse
import os
import sys

from mmengine.runner import Runner

from dinat_mm.checkpoint import require_checkpoint, trusted_checkpoint_types
from dinat_mm.cli import checks, config
from dinat_mm.cli.classifier_checkpoint import convert_load_from
from dinat_mm.cli.report import classification_summary
from dinat_mm.errors import UserError


def main():
    parser = argparse.ArgumentParser(description='Evaluate a DiNAT classifier, detector or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file (this project's training writes them)")
    parser.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='write pictures of the predictions to this folder')
    parser.add_argument('--tta', action='store_true', help="test-time augmentation (the config's tta_model and tta_pipeline)")
    config.add_common_arguments(parser)
    args = parser.parse_args()
    try:
        cfg = config.prepare(args)
        cfg.load_from = args.checkpoint
        if args.show_dir:
            config.enable_visualization(cfg, os.path.abspath(args.show_dir))
        if args.out:
            config.add_dump_results(cfg, args.out)
        if args.tta:
            config.enable_tta(cfg)
        require_checkpoint(args.checkpoint)  # after the options, before any data is read
        convert_load_from(cfg)
        checks.check_dataset_paths(cfg, ['test_dataloader'])
        checks.check_class_folders(cfg, ['test_dataloader'])
        checks.check_evaluators(cfg, ['test_evaluator'])
        checks.check_panopticapi(cfg, ['test_dataloader', 'test_evaluator'])
        with trusted_checkpoint_types():  # mmengine's own torch.load of this project's checkpoints
            runner = Runner.from_cfg(cfg)
            checks.check_checkpoint_matches(runner.model, cfg.load_from)
            metrics = runner.test()
        if cfg.default_scope == 'mmpretrain':
            print(classification_summary(metrics, runner.test_dataloader.dataset.metainfo.get('classes') or ()))
    except UserError as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
