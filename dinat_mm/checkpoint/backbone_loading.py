"""Loading a checkpoint of any supported layout into a backbone module, with a logged summary."""
from __future__ import annotations

import warnings
from typing import Dict, List, Tuple

import torch
from mmengine.logging import print_log

from .formats import resize_rpb, to_backbone
from .loading import CheckpointError, load_checkpoint_file, trusted_checkpoint_types


def read_checkpoint(source: str, map_location: str = 'cpu'):
    """A local file (torch or safetensors) or an http(s) URL (through mmengine's cache), loaded
    without running code."""
    if str(source).startswith(('http://', 'https://')):
        from mmengine.runner.checkpoint import CheckpointLoader
        with trusted_checkpoint_types():
            return CheckpointLoader.load_checkpoint(source, map_location=map_location)
    return load_checkpoint_file(source, map_location=map_location)


def fit_state(state: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], name: str) -> Tuple[Dict, List[str]]:
    """The entries of ``state`` that ``own`` (a module's state dict) has, rpb tables of another
    kernel size resized to the module's; any other shape mismatch is an error naming ``name``."""
    loadable, resized = {}, []
    for key, value in state.items():
        if key not in own:
            continue
        want = own[key].shape
        if value.shape != want:
            if key.endswith('attn.rpb') and value.dim() == 3 and value.shape[0] == want[0]:
                value = resize_rpb(value, tuple(want[1:]))
                resized.append(f'{key} {tuple(state[key].shape)} -> {tuple(want)}')
            else:
                raise CheckpointError(f'{name}: {key} has shape {tuple(value.shape)} in the checkpoint and '
                                      f'{tuple(want)} in the model')
        loadable[key] = value
    if resized:
        warnings.warn(f'resized {len(resized)} rpb tables of another kernel size (bicubic): {resized[0]} ...')
    return loadable, resized


def load_into_backbone(module: torch.nn.Module, source, map_location: str = 'cpu') -> Dict:
    """Load ``source`` (path, URL or an already loaded checkpoint) into ``module``. Returns the
    report that is also logged: layout, loaded, resized, dropped, missing (left initialised) and
    unexpected keys. A shape mismatch other than an rpb table is an error."""
    checkpoint = read_checkpoint(source, map_location) if isinstance(source, str) else source
    name = source if isinstance(source, str) else 'checkpoint'
    state, report = to_backbone(checkpoint)
    own = module.state_dict()
    loadable, resized = fit_state(state, own, name)
    module.load_state_dict(loadable, strict=False)
    report.update(loaded=sorted(loadable), resized=resized, missing=sorted(set(own) - set(loadable)),
                  unexpected=sorted(set(state) - set(own)))
    print_log(f'{type(module).__name__}: loaded {len(loadable)}/{len(own)} tensors from {name} '
              f'({report["layout"]} layout); resized rpb: {len(resized)}; dropped: {len(report["dropped"])} '
              f'{report["dropped"][:6]}; missing (left initialised): {report["missing"]}; '
              f'unexpected: {report["unexpected"]}', logger='current')
    return report
