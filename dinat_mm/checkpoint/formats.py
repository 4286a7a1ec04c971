"""Checkpoint layouts -> dinat_mm's backbone keys. Pure key/tensor transformations.

dinat_mm's backbone uses the DiNAT release's own parameter names, so the release's ImageNet
checkpoints are native apart from their classifier. The layouts:

- ``native``: dinat_mm backbone checkpoints and the release's ImageNet classifiers
  (``patch_embed.*``, ``levels.{i}.blocks.{j}.*``, ``levels.{i}.downsample.*``; DiNAT_s:
  ``layers.{i}.*``; a classifier's final ``norm.*`` and ``head.*`` are dropped).
- ``detector``: whole mmdet/mmseg models (the release's COCO/ADE20K checkpoints and this project's
  training checkpoints): the ``backbone.`` part, with its ``norm{i}`` output norms.
- ``huggingface``: ``shi-labs/dinat-*`` and ``shi-labs/nat-*`` (DinatModel / NatModel without
  prefix, Dinat/NatForImageClassification under ``dinat.`` / ``nat.``, Dinat/NatBackbone without
  prefix): query/key/value stack into qkv in that order, layer_scale_parameters rows 0/1 become
  gamma1/gamma2, ``hidden_states_norms.stage{n}`` is ``norm{n-1}``.
- ``mmpretrain``: whole mmpretrain classifiers (``backbone.*``, ``head.fc.*``), this project's.

A classifier (:func:`to_classifier`) adds what a backbone drops: the final norm (the release's
``norm.*``, Hugging Face's ``layernorm.*``), which is the backbone's last output norm
(``norm{last level}``, or ``norm`` of the isotropic models), and the linear head (``head.*``,
``classifier.*``), which is mmpretrain's ``head.fc``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from .loading import CheckpointError

StateDict = Dict[str, torch.Tensor]

_HF_LAYER = r'^encoder\.levels\.(\d+)\.layers\.(\d+)\.'
_HF_RULES = [
    (r'^embeddings\.patch_embeddings\.projection\.(\d)\.', r'patch_embed.proj.\1.'),
    (r'^embeddings\.norm\.', 'patch_embed.norm.'),
    (_HF_LAYER + r'layernorm_before\.', r'levels.\1.blocks.\2.norm1.'),
    (_HF_LAYER + r'layernorm_after\.', r'levels.\1.blocks.\2.norm2.'),
    (_HF_LAYER + r'attention\.self\.rpb$', r'levels.\1.blocks.\2.attn.rpb'),
    (_HF_LAYER + r'attention\.output\.dense\.', r'levels.\1.blocks.\2.attn.proj.'),
    (_HF_LAYER + r'intermediate\.dense\.', r'levels.\1.blocks.\2.mlp.fc1.'),
    (_HF_LAYER + r'output\.dense\.', r'levels.\1.blocks.\2.mlp.fc2.'),
    (r'^encoder\.levels\.(\d+)\.downsample\.', r'levels.\1.downsample.'),
]
_HF_DROPPED = re.compile(r'^(layernorm\.|classifier\.|pooler\.)')
_CLASSIFIER_DROPPED = re.compile(r'^(norm\.|head\.)')


def rename(name: str, rules: List[Tuple[str, str]]) -> Optional[str]:
    """``name`` rewritten by the first (pattern, replacement) rule that matches it, or None."""
    for pattern, replacement in rules:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    return None


def unwrap(checkpoint) -> StateDict:
    """The state dict inside a checkpoint: under 'state_dict' or 'model', or the mapping itself;
    a leading 'module.' (DataParallel) is removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'a checkpoint must be a mapping, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    state = OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in checkpoint.items()
                        if isinstance(v, torch.Tensor))
    if not state:
        raise CheckpointError('the checkpoint holds no tensors')
    return state


def detect(state: Mapping[str, torch.Tensor]) -> str:
    keys = list(state)
    if any(k.startswith('backbone.') for k in keys):
        return 'detector'
    if any(k.startswith(('dinat.embeddings.', 'nat.embeddings.', 'embeddings.patch_embeddings.')) for k in keys):
        return 'huggingface'
    if any(k.startswith(('patch_embed.proj.', 'levels.')) for k in keys):
        return 'native'
    raise CheckpointError(f'unrecognised checkpoint layout (first keys: {keys[:5]}); expected a DiNAT/NAT '
                          'backbone, classifier, detector/segmentor or Hugging Face checkpoint')


def _strip_hf_prefix(key: str) -> str:
    for prefix in ('dinat.', 'nat.'):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def from_huggingface(state: Mapping[str, torch.Tensor]) -> Tuple[StateDict, List[str]]:
    out, dropped, qkv = OrderedDict(), [], {}
    for key, value in state.items():
        name = _strip_hf_prefix(key)
        stage = re.match(r'^hidden_states_norms\.stage(\d+)\.(.*)$', name)
        part = re.match(_HF_LAYER + r'attention\.self\.(query|key|value)\.(weight|bias)$', name)
        scale = re.match(_HF_LAYER + r'layer_scale_parameters$', name)
        if stage:
            out[f'norm{int(stage[1]) - 1}.{stage[2]}'] = value
        elif part:
            qkv.setdefault((part[1], part[2], part[4]), {})[part[3]] = value
        elif scale:
            out[f'levels.{scale[1]}.blocks.{scale[2]}.gamma1'] = value[0]
            out[f'levels.{scale[1]}.blocks.{scale[2]}.gamma2'] = value[1]
        elif _HF_DROPPED.match(name):
            dropped.append(key)
        else:
            target = rename(name, _HF_RULES)
            if target is None:
                dropped.append(key)
            else:
                out[target] = value
    for (level, layer, kind), parts in qkv.items():
        if set(parts) != {'query', 'key', 'value'}:
            raise CheckpointError(f'levels {level} layer {layer}: attention {kind} lacks one of query/key/value')
        out[f'levels.{level}.blocks.{layer}.attn.qkv.{kind}'] = torch.cat(
            [parts['query'], parts['key'], parts['value']], dim=0)
    return out, dropped


def to_backbone(checkpoint) -> Tuple[StateDict, Dict]:
    """Any supported checkpoint -> (backbone state dict in dinat_mm names, report)."""
    state = unwrap(checkpoint)
    layout = detect(state)
    if layout == 'detector':
        out = OrderedDict((k[len('backbone.'):], v) for k, v in state.items() if k.startswith('backbone.'))
        dropped = [k for k in state if not k.startswith('backbone.')]
    elif layout == 'huggingface':
        out, dropped = from_huggingface(state)
    else:
        out = OrderedDict((k, v) for k, v in state.items() if not _CLASSIFIER_DROPPED.match(k))
        dropped = [k for k in state if _CLASSIFIER_DROPPED.match(k)]
    return out, dict(layout=layout, dropped=dropped)


def resize_rpb(table: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """A [heads, 2k-1, 2k-1] bias table of another kernel size, resized bicubically per head."""
    resized = torch.nn.functional.interpolate(table[None].float(), size=size, mode='bicubic', align_corners=False)
    return resized[0].to(table.dtype)


def final_norm_name(state: Mapping[str, torch.Tensor]) -> str:
    """The backbone's name for a classifier's final norm, read off a native state dict: ``norm``
    for the isotropic models (``layers.{i}.norm1``), else ``norm{last level}``."""
    levels = [int(m[2]) for m in (re.match(r'^(levels|layers)\.(\d+)\.blocks\.', k) for k in state) if m]
    if levels:
        return f'norm{max(levels)}'
    if any(re.match(r'^layers\.\d+\.norm1\.', k) for k in state):
        return 'norm'
    raise CheckpointError(f'no DiNAT/NAT levels or layers among the checkpoint\'s keys (first: {list(state)[:5]})')


def is_mmpretrain_classifier(state: Mapping[str, torch.Tensor]) -> bool:
    """A whole mmpretrain ImageClassifier: ``backbone.*`` and ``head.fc.*``."""
    return any(k.startswith('head.fc.') for k in state) and any(k.startswith('backbone.') for k in state)


def to_classifier(checkpoint) -> Tuple[StateDict, Dict]:
    """Any supported classifier checkpoint -> (mmpretrain ImageClassifier state dict, report).

    The report's ``head`` is False when the checkpoint has no classifier head (Hugging Face's
    DinatModel, a backbone or a detector): the head then stays as initialised."""
    state = unwrap(checkpoint)
    if is_mmpretrain_classifier(state):
        kept = OrderedDict((k, v) for k, v in state.items() if k.startswith(('backbone.', 'head.')))
        return kept, dict(layout='mmpretrain', dropped=[k for k in state if k not in kept], head=True)
    backbone, report = to_backbone(state)
    layout = report['layout']
    out = OrderedDict((f'backbone.{k}', v) for k, v in backbone.items())
    if layout == 'detector':
        return out, dict(report, head=False)
    norm_prefix, head_prefix = ('norm.', 'head.') if layout == 'native' else ('layernorm.', 'classifier.')
    final = final_norm_name(backbone)
    dropped = []
    for key in report['dropped']:
        name = _strip_hf_prefix(key) if layout == 'huggingface' else key
        if name.startswith(norm_prefix):
            out[f'backbone.{final}.{name[len(norm_prefix):]}'] = state[key]
        elif name.startswith(head_prefix):
            out[f'head.fc.{name[len(head_prefix):]}'] = state[key]
        else:
            dropped.append(key)
    return out, dict(layout=layout, dropped=dropped, head=any(k.startswith('head.fc.') for k in out))
