"""Checks before a run starts, so that a missing file is named at once rather than after
minutes of training or a whole inference: datasets (and a classification folder's class
folders), evaluators' files, panopticapi, and the checkpoint (that it exists, and that it was
written for the config's model)."""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
from typing import Callable, List

import torch
from mmengine.config import Config

from ..checkpoint import load_checkpoint_file, require_checkpoint
from ..errors import UserError
from .config import walk


def walk_datasets(cfg: Config, loaders: List[str], visit: Callable[[dict], None]) -> None:
    """``visit`` every dict inside the datasets of the config's ``loaders`` (wrapped ones too)."""
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset')
        if dataset is not None:
            walk(dataset.to_dict() if hasattr(dataset, 'to_dict') else dataset, visit)


def dataset_paths(cfg: Config, loaders: List[str]) -> List[str]:
    """The files and folders the config's datasets read from (data_root joined)."""
    paths = []

    def collect(d: dict) -> None:
        if 'data_root' not in d and 'ann_file' not in d:
            return
        root = d.get('data_root') or ''
        if 'ann_file' in d and d['ann_file']:
            paths.append(osp.join(root, d['ann_file']))
        prefix = d.get('data_prefix') or {}
        for value in ([prefix] if isinstance(prefix, str) else prefix.values()):
            if isinstance(value, str) and value:
                paths.append(osp.join(root, value))
        if 'ann_file' not in d and 'data_prefix' not in d and d.get('data_root'):
            paths.append(root)

    walk_datasets(cfg, loaders, collect)
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
        walk(cfg.get(name), lambda d: needed.append((d['type'], _PANOPTICAPI[d['type']]))
              if d.get('type') in _PANOPTICAPI else None)
    for user, module in dict(needed).items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise UserError(f'{user} needs {module}, and panopticapi is not installed (it is not on PyPI: '
                            'pip install git+https://github.com/cocodataset/panopticapi.git)')


_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def check_class_folders(cfg: Config, loaders: List[str]) -> None:
    """An mmpretrain folder dataset (no ann_file) needs a folder per class holding images."""
    def check(d: dict) -> None:
        if d.get('type') not in ('CustomDataset', 'ImageNet', 'ImageNet21k') or d.get('ann_file'):
            return
        prefix = d.get('data_prefix') or d.get('split') or ''
        folder = osp.join(d.get('data_root') or '', prefix if isinstance(prefix, str) else prefix.get('img_path', ''))
        if not osp.isdir(folder):
            return
        if d.get('type') != 'CustomDataset' and osp.isfile(osp.join(d.get('data_root') or '', 'meta', f'{prefix}.txt')):
            return  # ImageNet's annotation-file layout
        classes = [c for c in sorted(os.listdir(folder)) if osp.isdir(osp.join(folder, c)) and any(
            f.lower().endswith(_IMAGE_SUFFIXES) for f in os.listdir(osp.join(folder, c)))]
        if not classes:
            raise UserError(f'{folder}: no class folders with images (a classification folder holds one folder per '
                            f'class: {folder}/<class>/<image>.jpg)')

    walk_datasets(cfg, loaders, check)


def check_checkpoint_matches(model: torch.nn.Module, path: str) -> None:
    """Refuse a checkpoint written for another architecture (mmengine would only warn)."""
    require_checkpoint(path)
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

