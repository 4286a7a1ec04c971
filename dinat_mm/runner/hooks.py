"""Hooks for compiling, exact resumption and CPU distributed runs."""
from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from ..errors import UserError


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
        # static shapes unless the config says otherwise: inductor fails on dynamic ones where a
        # level is padded (docs/deployment.md)
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


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


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
