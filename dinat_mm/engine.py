"""What tools/train.py and tools/test.py need beyond mmengine's Runner, for mmdet and mmseg alike
(the config's default_scope picks the library): CPU-friendly AMP and distributed settings, clear
errors for missing data, configs and mismatched checkpoints."""
from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import os
import os.path as osp
import random
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper


class UserError(Exception):
    """A problem with what the user asked for; the tools print it without a traceback."""


class CPUBF16OptimWrapper(OptimWrapper):
    """Mixed precision on CPU: forward under bfloat16 autocast. mmengine's AmpOptimWrapper asserts
    a GPU; bfloat16 has float32's range, so no loss scaling is needed."""

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield


def bf16_features(extract_feat):
    """Wrap a detector's ``extract_feat`` (backbone + neck, nearly all of its FLOPs) to run under
    CPU bfloat16 autocast and hand float32 features to the heads: mmcv's CPU nms and RoIAlign
    have no bfloat16 kernels."""
    if getattr(extract_feat, 'bf16_features', False):
        return extract_feat

    @functools.wraps(extract_feat)
    def wrapped(*args, **kwargs):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            feats = extract_feat(*args, **kwargs)
        return tuple(f.float() for f in feats)

    wrapped.bf16_features = True
    return wrapped


class BF16FeaturesHook(Hook):
    """--amp for mmdet detectors on CPU: :func:`bf16_features` on the runner's model."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'extract_feat'):
            raise UserError(f'BF16FeaturesHook needs a detector with extract_feat, got {type(model).__name__}')
        model.extract_feat = bf16_features(model.extract_feat)
        runner.logger.info('bfloat16 autocast on CPU for the backbone and neck; heads in float32')


class CompileHook(Hook):
    """--compile: torch.compile of the backbone and the neck, in place (``nn.Module.compile``, so
    parameter names and checkpoints do not change), with ``options`` from the config's mmengine
    ``compile`` entry where it is a dict (backend, mode, dynamic, ...).

    Only the backbone and neck: their shapes are regular and they hold the fusable LayerNorm, GELU,
    residual and permute traffic, while mmdet's and mmseg's heads and losses are full of
    data-dependent shapes and Python control flow (graph breaks, little to fuse). Each new input
    size compiles afresh (static shapes), up to torch's recompile limit."""

    priority = 'VERY_HIGH'

    def __init__(self, options: Optional[dict] = None):
        # static shapes unless the config says otherwise: DiNAT-T compiled at 800x1216 and then, with
        # dynamic shapes, at 512x512 (where level 1 is padded) failed in inductor (torch 2.13,
        # ValueRangeError in require_stride_order of na2d's op inputs)
        self.options = dict(dict(dynamic=False), **(options or {}))

    def before_run(self, runner) -> None:
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parts = [name for name in ('backbone', 'neck') if isinstance(getattr(model, name, None), torch.nn.Module)]
        if not parts:
            raise UserError(f'--compile needs a model with a backbone, got {type(model).__name__}')
        for name in parts:
            module = getattr(model, name)
            if not getattr(module, '_compiled_call_impl', None):
                module.compile(**self.options)
        runner.logger.info(f'torch.compile of the {" and ".join(parts)} ({self.options or "default options"}); '
                           'the first iterations at each new input size compile')


def enable_compile(cfg: Config) -> None:
    """--compile: CompileHook with the options of the config's ``compile`` entry, which then no
    longer asks mmengine to compile the whole train_step (mmengine compiles no test_step)."""
    options = cfg.get('compile')
    cfg.compile = None
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'CompileHook']
    cfg.custom_hooks = hooks + [dict(type='CompileHook', options=options if isinstance(options, dict) else None)]


class RNGStateHook(Hook):
    """Saves the random generators' states in checkpoints and restores them on resume, so that a
    resumed run draws the same dropout, drop-path and RoI samples as an uninterrupted one
    (mmengine 0.10.7 restores the weights, optimizer and data position, not these)."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                                       python=random.getstate())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is not None and runner._resume:  # load_from for fine-tuning keeps fresh randomness
            torch.set_rng_state(state['torch'])
            np.random.set_state(tuple(state['numpy']))
            random.setstate(_tuples(state['python']))


class SyncNormStatsHook(Hook):
    """CPU distributed runs: SyncBN needs CUDA, so tools/train.py makes it BN, whose running
    statistics would then follow each rank's own batches. Averaging the floating-point buffers over
    the ranks after every iteration (before a checkpoint is written) keeps all ranks' models
    identical, with running means those of the whole batch."""

    priority = 'LOW'  # after the optimizer step, before CheckpointHook (VERY_LOW)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        from mmengine.dist import all_reduce_params, is_distributed
        if is_distributed():
            all_reduce_params([b for b in runner.model.buffers() if b.is_floating_point()], op='mean')


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


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
    if cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        raise UserError(f"{path}: default_scope must be 'mmdet' or 'mmseg', got {cfg.get('default_scope')!r}")
    return cfg


def model_registry(cfg: Config):
    """mmdet's or mmseg's MODELS (as the config's default_scope says), with that library's modules
    registered."""
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules()
    return MODELS


def set_work_dir(cfg: Config, config_path: str, work_dir: str = None) -> None:
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


# Measured on a 2-core AMD EPYC with AVX2 and no AVX512_BF16 (torch 2.13, issue 13 of this project)
EMULATED_BF16_COST = ('the DiNAT-T backbone forward at 800x1216 took 12.67 s under bfloat16 autocast against '
                      '1.56 s in float32 (8x), and one of the FPN\'s 3x3 convolutions 322 s against 0.9 s')


def cpu_bf16_support() -> Optional[str]:
    """None if this CPU computes bfloat16 natively (x86 AVX512_BF16 or AMX, ARM's BF16 extension),
    else what it has instead: there torch emulates bfloat16 arithmetic, many times slower."""
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    try:
        with open('/proc/cpuinfo') as f:
            flags = {w for line in f if line.lower().startswith(('flags', 'features')) for w in line.split()}
    except OSError:
        flags = set()
    if 'bf16' in flags:  # aarch64 with FEAT_BF16
        return None
    return f'CPU capability {torch.backends.cpu.get_cpu_capability()}, without AVX512_BF16, AMX or BF16'


def enable_amp(cfg: Config, force: bool = False) -> None:
    """--amp: float16 with loss scaling on GPU (mmengine's AmpOptimWrapper), bfloat16 autocast on CPU
    (the whole forward for segmentors; backbone and neck for detectors, see BF16FeaturesHook).
    Refused on a CPU without native bfloat16 unless ``force``."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUBF16OptimWrapper'):
        raise UserError(f'--amp cannot wrap optim_wrapper type {cfg.optim_wrapper.type!r}')
    missing = None if torch.cuda.is_available() else cpu_bf16_support()
    if missing and not force:
        raise UserError(f'--amp on this CPU ({missing}) would emulate bfloat16 and run slower, not faster: '
                        f'{EMULATED_BF16_COST}. Train in float32 (no --amp), or pass --amp force to run it anyway')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif cfg.default_scope == 'mmdet':
        hooks = list(cfg.get('custom_hooks', []))
        if not any(h.get('type') == 'BF16FeaturesHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='BF16FeaturesHook')]
    else:
        cfg.optim_wrapper.type = 'CPUBF16OptimWrapper'


def _walk(node, fn) -> None:
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, fn)


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
        _walk(cfg._cfg_dict, to_bn)
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


def dataset_paths(cfg: Config, loaders: List[str]) -> List[str]:
    """The files and folders the config's datasets read from (data_root joined)."""
    paths = []
    for loader in loaders:
        if cfg.get(loader) is None:
            continue

        def collect(d: dict) -> None:
            root = d.get('data_root') or ''
            if 'ann_file' in d and d['ann_file']:
                paths.append(osp.join(root, d['ann_file']))
            for value in (d.get('data_prefix') or {}).values():
                if isinstance(value, str) and value:
                    paths.append(osp.join(root, value))
            if 'ann_file' not in d and 'data_prefix' not in d and d.get('data_root'):
                paths.append(root)
        dataset = cfg[loader].get('dataset')
        if dataset is not None:
            _walk(dataset.to_dict() if hasattr(dataset, 'to_dict') else dataset,
                  lambda d: collect(d) if 'data_root' in d or 'ann_file' in d else None)
    return list(dict.fromkeys(paths))


def check_dataset_paths(cfg: Config, loaders: List[str]) -> None:
    missing = [p for p in dataset_paths(cfg, loaders) if not osp.exists(p)]
    if missing:
        raise UserError('dataset not found: ' + ', '.join(missing) +
                        ' (set data_root with --cfg-options or put the data there; README lists the layouts)')


# What mmdet imports only when it builds these, from panopticapi, which only git provides.
_PANOPTICAPI = {'LoadPanopticAnnotations': 'panopticapi.utils', 'CocoPanopticMetric': 'panopticapi.evaluation'}


def check_evaluators(cfg: Config, names: List[str]) -> None:
    """What an evaluator reads only after the whole inference has run: its annotation files (their
    paths do not follow data_root)."""
    for name in names:
        evaluators = cfg.get(name) or []
        many = isinstance(evaluators, (list, tuple))
        for index, evaluator in enumerate(evaluators if many else [evaluators]):
            key = f'{name}.{index}' if many else name
            for field in ('ann_file', 'seg_prefix'):
                path = evaluator.get(field)
                if isinstance(path, str) and not osp.exists(path):
                    raise UserError(f'{key} ({evaluator.get("type")}): {field} not found: {path} (an evaluator\'s '
                                    f'paths do not follow data_root: give --cfg-options {key}.{field}=...)')


def check_panopticapi(cfg: Config, names: List[str]) -> None:
    """mmdet's panoptic loading and metric import panopticapi when they are built, the metric only
    after the whole inference: name it before anything runs."""
    needed = []
    for name in names:
        _walk(cfg.get(name), lambda d: needed.append((d['type'], _PANOPTICAPI[d['type']]))
              if d.get('type') in _PANOPTICAPI else None)
    for user, module in dict(needed).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise UserError(f'{user} needs {module}, and panopticapi is not installed (it is not on PyPI: '
                            'pip install git+https://github.com/cocodataset/panopticapi.git)')


def check_checkpoint_exists(path: str) -> None:
    if not (path.startswith(('http://', 'https://')) or osp.isfile(path)):
        raise UserError(f'checkpoint not found: {path}')


def check_checkpoint_matches(model: torch.nn.Module, path: str) -> None:
    """Refuse a checkpoint written for another architecture (mmengine would only warn)."""
    from .checkpoint import load_checkpoint_file
    check_checkpoint_exists(path)
    state = load_checkpoint_file(path)
    state = state.get('state_dict', state) if isinstance(state, dict) else state
    model = getattr(model, 'module', model)  # a TTA or DDP wrapper holds the real model
    own = {k: v.shape for k, v in model.state_dict().items()}
    common = [k for k in own if k in state]
    mismatched = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k])}'
                  for k in common if tuple(state[k].shape) != tuple(own[k])]
    if len(common) < 0.5 * len(own) or mismatched:
        detail = '; '.join(mismatched[:3]) or f'only {len(common)} of the model\'s {len(own)} keys present'
        raise UserError(f'checkpoint {path} does not match the model built from the config '
                        f'(another architecture?): {detail}')


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Draw predictions into ``show_dir`` with the library's visualizer hook."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise UserError('the config has no default_hooks.visualization to draw predictions with')
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
