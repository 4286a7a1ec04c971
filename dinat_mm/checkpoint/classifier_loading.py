"""Loading a whole classifier checkpoint (backbone, final norm and head) of any supported layout
into an mmpretrain ImageClassifier, with a logged summary."""
from __future__ import annotations

from typing import Dict

import torch
from mmengine.logging import print_log

from .backbone_loading import fit_state, read_checkpoint
from .formats import to_classifier
from .loading import CheckpointError


def classifier_state(checkpoint, own: Dict[str, torch.Tensor], name: str = 'checkpoint'):
    """``checkpoint`` as the state dict of the classifier whose state dict is ``own``, with its
    report: layout, head (whether the checkpoint had one), resized, missing, unexpected.

    A head of another class count is an error naming both counts (a 22K head is never cut to
    1K); so is any other shape that differs, but for rpb tables, which are resized."""
    try:
        state, report = to_classifier(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f'{name}: {err}') from None
    head, want = state.get('head.fc.weight'), own.get('head.fc.weight')
    if head is not None and want is not None and head.shape[1] == want.shape[1] and head.shape[0] != want.shape[0]:
        raise CheckpointError(
            f'{name}: the head does not fit: the checkpoint classifies {head.shape[0]} classes, the model '
            f'{want.shape[0]} (set the config\'s head.num_classes, or load the backbone only through the '
            'backbone\'s init_cfg)')
    loadable, resized = fit_state(state, own, name)
    report.update(resized=resized, missing=sorted(set(own) - set(loadable)), unexpected=sorted(set(state) - set(own)))
    backbone = [k for k in own if k.startswith('backbone.')]
    if not any(k.startswith('backbone.') for k in loadable) or len(report['unexpected']) > len(backbone) // 2:
        raise CheckpointError(f'{name}: does not match the model (another architecture?): unexpected '
                              f'{report["unexpected"][:5]}, missing {report["missing"][:5]}')
    return loadable, report


def load_into_classifier(model: torch.nn.Module, source, map_location: str = 'cpu') -> Dict:
    """Load ``source`` (path, URL or a loaded checkpoint) whole into ``model`` (an mmpretrain
    ImageClassifier). Returns the report, which is also logged."""
    checkpoint = read_checkpoint(source, map_location) if isinstance(source, str) else source
    name = source if isinstance(source, str) else 'checkpoint'
    loadable, report = classifier_state(checkpoint, model.state_dict(), name)
    model.load_state_dict(loadable, strict=False)
    head = 'loaded' if report['head'] else 'not in the checkpoint, left initialised'
    print_log(f'{type(model).__name__}: loaded {len(loadable)} tensors from {name} ({report["layout"]} layout); '
              f'head: {head}; resized rpb: {len(report["resized"])}; missing (left initialised): '
              f'{report["missing"]}; unexpected: {report["unexpected"]}', logger='current')
    return report
