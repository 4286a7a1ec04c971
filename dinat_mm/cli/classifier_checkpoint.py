"""The checkpoint a classification run loads. mmengine's loader (``load_from``, tools/test.py's
CHECKPOINT) reads only mmpretrain's own names; a classifier of another layout (the DiNAT
release's, Hugging Face's) is converted whole once, checked against the config's model, into
``<work_dir>/converted/``, and the run loads that."""
from __future__ import annotations

import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..checkpoint import classifier_state, is_mmpretrain_classifier, read_checkpoint, require_checkpoint, unwrap
from ..fileio import written_atomically
from .config import meta_model_state


def loadable_classifier_checkpoint(cfg: Config, path: str) -> str:
    """``path`` itself when it is in mmpretrain's layout; else the whole conversion of it for the
    config's model (a head of another class count, or another architecture, is an error)."""
    require_checkpoint(path)
    checkpoint = read_checkpoint(path)
    if is_mmpretrain_classifier(unwrap(checkpoint)):
        return path
    state, report = classifier_state(checkpoint, meta_model_state(cfg), path)
    stem = osp.splitext(osp.basename(path.rstrip('/')))[0]
    out = osp.join(cfg.work_dir, 'converted', f'{stem}.pth')
    os.makedirs(osp.dirname(out), exist_ok=True)
    with written_atomically(out) as partial:
        torch.save(dict(state_dict={k: v.contiguous() for k, v in state.items()},
                        meta=dict(converted_from=osp.basename(path), layout=report['layout'])), partial)
    head = 'with its head' if report['head'] else 'without a head (the head stays initialised)'
    print_log(f'{path} ({report["layout"]} layout, {head}) converted for the model: {out}', logger='current')
    return out


def convert_load_from(cfg: Config) -> None:
    """A classification config's ``load_from`` in any supported layout, converted when needed."""
    if cfg.get('default_scope') == 'mmpretrain' and cfg.get('load_from') and not cfg.get('resume'):
        cfg.load_from = loadable_classifier_checkpoint(cfg, cfg.load_from)
