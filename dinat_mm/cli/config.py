"""A tool's run from its command line: the config loaded and overridden, with its work dir,
launcher, AMP, compile, TTA, visualisation and result-dump settings. mmdet and mmseg alike: the
config's default_scope picks the library."""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
from typing import Dict

import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import CheckpointHook

from ..errors import UserError
from ..registry import SCOPES, scope_models
from ..runner.amp import cpu_bf16_support


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share."""
    parser.add_argument('--work-dir', help='where logs, checkpoints and metrics go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries, k=v')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the backbone and neck (options from the config's compile=dict(...))")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def prepare(args: argparse.Namespace) -> Config:
    """The config of a tool's run: loaded, overridden, with its work dir and launcher settings."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.config, args.work_dir)
    configure_launcher(cfg, args.launcher)
    init_distributed_without_gpu(args.launcher)
    if getattr(args, 'compile', False):
        enable_compile(cfg)
    return cfg


def load_config(path: str, cfg_options: Dict = None) -> Config:
    if not osp.isfile(path):
        raise UserError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise UserError(f'{path}: default_scope must be one of {", ".join(map(repr, SCOPES))}, got {scope!r}')
    model_type = cfg.get('model', {}).get('type')
    if isinstance(model_type, str) and scope_models(scope).get(model_type) is None:
        owners = [s for s in SCOPES if s != scope and scope_models(s).get(model_type) is not None]
        hint = f": it is {owners[0]}'s, so set default_scope = '{owners[0]}'" if owners else ''
        raise UserError(f"{path}: model type {model_type!r} is not in {scope}'s registry (default_scope = "
                        f"'{scope}'){hint}")
    return cfg


def meta_model_state(cfg: Config) -> Dict[str, torch.Tensor]:
    """The state dict of the config's model, built on the meta device (shapes only, no memory,
    no ImageNet download)."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    with torch.device('meta'):
        return scope_models(cfg.default_scope).build(model_cfg).state_dict()


def set_work_dir(cfg: Config, config_path: str, work_dir: str = None) -> None:
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])



def enable_compile(cfg: Config) -> None:
    """--compile: CompileHook with the options of the config's ``compile`` entry, which then no
    longer asks mmengine to compile the whole train_step (mmengine compiles no test_step)."""
    options = cfg.get('compile')
    cfg.compile = None
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'CompileHook']
    cfg.custom_hooks = hooks + [dict(type='CompileHook', options=options if isinstance(options, dict) else None)]



def enable_amp(cfg: Config, force: bool = False) -> None:
    """--amp: float16 with loss scaling on GPU (mmengine's AmpOptimWrapper), bfloat16 autocast on CPU
    (the whole forward for segmentors; backbone and neck for detectors, see BF16FeaturesHook).
    Refused on a CPU without native bfloat16 unless ``force``."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUBF16OptimWrapper'):
        raise UserError(f'--amp cannot wrap optim_wrapper type {cfg.optim_wrapper.type!r}')
    missing = None if torch.cuda.is_available() else cpu_bf16_support()
    if missing and not force:
        raise UserError(f'--amp on this CPU ({missing}) would emulate bfloat16 and run many times slower, not '
                        'faster (docs/performance.md). Train in float32 (no --amp), or pass --amp force to run it '
                        'anyway')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif cfg.default_scope == 'mmdet':
        hooks = list(cfg.get('custom_hooks', []))
        if not any(h.get('type') == 'BF16FeaturesHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='BF16FeaturesHook')]
    else:
        cfg.optim_wrapper.type = 'CPUBF16OptimWrapper'


def walk(node, fn) -> None:
    """Call ``fn`` on every dict in a nested config, outermost first."""
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            walk(value, fn)


def configure_launcher(cfg: Config, launcher: str) -> None:
    """gloo when there is no GPU; without GPUs SyncBN cannot synchronise, so it becomes BN, with its
    statistics averaged over the ranks after each iteration (SyncNormStatsHook)."""
    cfg.launcher = launcher
    if torch.cuda.is_available():
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if launcher != 'none':
        if cfg.get('model_wrapper_cfg') is None:  # mmengine would pass device_ids=[rank]: GPU only
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                                         find_unused_parameters=cfg.get('find_unused_parameters', False))
        def to_bn(d: dict) -> None:
            if d.get('type') == 'SyncBN':
                d['type'] = 'BN'
        walk(cfg._cfg_dict, to_bn)
        hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'SyncNormStatsHook']
        cfg.custom_hooks = hooks + [dict(type='SyncNormStatsHook')]


def init_distributed_without_gpu(launcher: str) -> None:
    """Start the gloo process group for a CPU run. mmengine 0.10.7's init_dist calls
    torch.cuda.set_device, which fails without CUDA; the Runner uses an existing group as it is."""
    if launcher == 'none' or torch.cuda.is_available() or torch.distributed.is_initialized():
        return
    if launcher != 'pytorch':
        raise UserError(f'--launcher {launcher} needs GPUs; on CPU use --launcher pytorch (tools/dist_train.sh)')
    torch.distributed.init_process_group(backend='gloo')



def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Draw predictions into ``show_dir`` with the library's visualizer hook."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise UserError('the config has no default_hooks.visualization to draw predictions with')
    if cfg.default_scope == 'mmpretrain':
        hook.update(enable=True, interval=1, out_dir=show_dir)
        return
    hook['draw'] = True
    hook['interval'] = 1  # every image, not every 50th
    if cfg.default_scope == 'mmdet':
        hook['test_out_dir'] = show_dir  # relative names would land under the run's own folder
    else:
        cfg.visualizer['save_dir'] = show_dir
        # mmseg's hook reads runner.iter, which builds the train loop and its dataset even in a
        # test run: let that (never iterated) loader read the test data, so no training data is needed.
        cfg.train_dataloader.dataset = copy.deepcopy(cfg.test_dataloader.dataset)


def add_dump_results(cfg: Config, out: str) -> None:
    if not out.endswith(('.pkl', '.pickle')):
        raise UserError(f'--out must be a .pkl file, got {out}')
    dump = dict(type='DumpDetResults' if cfg.default_scope == 'mmdet' else 'DumpResults', out_file_path=out)
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    cfg.test_evaluator = list(evaluators) + [dump]


def enable_tta(cfg: Config) -> None:
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise UserError('--tta needs tta_model and tta_pipeline in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def make_checkpoints_atomic(cfg: Config) -> None:
    """Swap the config's mmengine CheckpointHook for dinat_mm's AtomicCheckpointHook (same arguments)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', CheckpointHook):
        hook['type'] = 'AtomicCheckpointHook'
