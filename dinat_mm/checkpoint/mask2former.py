"""detectron2 Mask2Former (the DiNAT release's ``mask2former_dinat_large_*.pth``) -> the keys of
mmdet 3.x's / mmseg 1.x's Mask2Former. Pure key/tensor transformations.

The two implementations are the same network under other names (checked module by module against
detectron2's ``MSDeformAttnPixelDecoder`` / ``MultiScaleMaskedTransformerDecoder`` and mmdet's
``MSDeformAttnPixelDecoder`` / ``Mask2FormerTransformerDecoder``): the same level order (lowest
resolution first), the same post-norm layers in the order cross-attention, self-attention, FFN,
``nn.MultiheadAttention`` in both (packed in_proj), the same multi-scale deformable attention
parameters, sine positional encodings without parameters, and the no-object class last.

- ``backbone.*`` is dinat_mm's own layout (the release's D2DiNAT) and is kept.
- ``sem_seg_head.pixel_decoder.*`` / ``sem_seg_head.predictor.*`` become ``{head}.pixel_decoder.*``
  / ``{head}.transformer_decoder.*`` and the head's own embeddings (``head`` is ``panoptic_head``
  in mmdet, ``decode_head`` in mmseg).
- ``criterion.*`` (the loss's class weights, a config value in mmdet/mmseg) is dropped.

Class order: detectron2's contiguous ids follow the dataset's category ids. That equals mmdet's /
mmseg's order for COCO (every thing id is below every stuff id), ADE20K instance and semantic and
Cityscapes; ADE20K panoptic interleaves things and stuff (ADE ids 0..149) where mmdet lists the
100 things and then the 50 stuff classes, each in id order: :func:`ade20k_panoptic_order`.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import List, Mapping, Optional, Sequence, Tuple

import torch

from .formats import rename
from .loading import CheckpointError

# The ADE20K-150 ids (detectron2's contiguous ids) of the 50 stuff classes; the other 100 are things.
_ADE20K_STUFF_IDS = (0, 1, 2, 3, 4, 5, 6, 9, 11, 13, 16, 17, 21, 25, 26, 28, 29, 34, 40, 46, 48, 51, 52,
                     54, 59, 60, 61, 63, 68, 77, 79, 84, 91, 94, 96, 99, 100, 101, 105, 106, 109, 113,
                     114, 117, 122, 128, 131, 140, 141, 145)

_PD = r'^sem_seg_head\.pixel_decoder\.'
_TD = r'^sem_seg_head\.predictor\.'
_RULES = [
    (_PD + r'input_proj\.(\d+)\.0\.', r'pixel_decoder.input_convs.\1.conv.'),
    (_PD + r'input_proj\.(\d+)\.1\.', r'pixel_decoder.input_convs.\1.gn.'),
    (_PD + r'transformer\.level_embed$', 'pixel_decoder.level_encoding.weight'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.self_attn\.', r'pixel_decoder.encoder.layers.\1.self_attn.'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.norm1\.', r'pixel_decoder.encoder.layers.\1.norms.0.'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.linear1\.', r'pixel_decoder.encoder.layers.\1.ffn.layers.0.0.'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.linear2\.', r'pixel_decoder.encoder.layers.\1.ffn.layers.1.'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.norm2\.', r'pixel_decoder.encoder.layers.\1.norms.1.'),
    (_PD + r'mask_features\.', 'pixel_decoder.mask_feature.'),
    (_TD + r'transformer_cross_attention_layers\.(\d+)\.multihead_attn\.', r'transformer_decoder.layers.\1.cross_attn.attn.'),
    (_TD + r'transformer_cross_attention_layers\.(\d+)\.norm\.', r'transformer_decoder.layers.\1.norms.0.'),
    (_TD + r'transformer_self_attention_layers\.(\d+)\.self_attn\.', r'transformer_decoder.layers.\1.self_attn.attn.'),
    (_TD + r'transformer_self_attention_layers\.(\d+)\.norm\.', r'transformer_decoder.layers.\1.norms.1.'),
    (_TD + r'transformer_ffn_layers\.(\d+)\.linear1\.', r'transformer_decoder.layers.\1.ffn.layers.0.0.'),
    (_TD + r'transformer_ffn_layers\.(\d+)\.linear2\.', r'transformer_decoder.layers.\1.ffn.layers.1.'),
    (_TD + r'transformer_ffn_layers\.(\d+)\.norm\.', r'transformer_decoder.layers.\1.norms.2.'),
    (_TD + r'decoder_norm\.', 'transformer_decoder.post_norm.'),
    (_TD + r'(query_feat|query_embed|level_embed)\.', r'\1.'),
    (_TD + r'input_proj\.(\d+)\.', r'decoder_input_projs.\1.'),
    (_TD + r'class_embed\.', 'cls_embed.'),
]
_MASK_EMBED = re.compile(_TD + r'mask_embed\.layers\.(\d+)\.(.*)$')
# detectron2 registers the extra FPN level(s) as adapter_{n} (lateral) and layer_{n} (output),
# n = 1 for the highest resolution; mmdet's lateral_convs/output_convs run the other way.
_FPN = re.compile(_PD + r'(adapter|layer)_(\d+)\.(norm\.)?(weight|bias)$')
_DROPPED = re.compile(r'^criterion\.')


def is_detectron2_mask2former(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith('sem_seg_head.predictor.') for k in state)


def ade20k_panoptic_order() -> List[int]:
    """For each class of mmdet's ADE20KPanopticDataset, its detectron2 contiguous id."""
    stuff = set(_ADE20K_STUFF_IDS)
    return [i for i in range(150) if i not in stuff] + list(_ADE20K_STUFF_IDS)


def from_detectron2(state: Mapping[str, torch.Tensor], head: str,
                    class_order: Optional[Sequence[int]] = None) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """A detectron2 Mask2Former state dict -> (mmdet/mmseg state dict, dropped keys).

    ``class_order[i]`` is the detectron2 class whose classifier row becomes class ``i``; the
    no-object row stays last. Unknown keys are an error (nothing is silently lost)."""
    out, dropped, unknown = OrderedDict(), [], []
    fpn_levels = max((int(m[2]) for m in map(_FPN.match, state) if m), default=0)
    for key, value in state.items():
        fpn, mask_embed = _FPN.match(key), _MASK_EMBED.match(key)
        if key.startswith('backbone.'):
            out[key] = value
        elif _DROPPED.match(key):
            dropped.append(key)
        elif fpn:
            kind = 'lateral_convs' if fpn[1] == 'adapter' else 'output_convs'
            index = fpn_levels - int(fpn[2])
            out[f'{head}.pixel_decoder.{kind}.{index}.{"gn" if fpn[3] else "conv"}.{fpn[4]}'] = value
        elif mask_embed:
            out[f'{head}.mask_embed.{2 * int(mask_embed[1])}.{mask_embed[2]}'] = value
        else:
            target = rename(key, _RULES)
            if target is None:
                unknown.append(key)
            else:
                out[f'{head}.{target}'] = value
    if unknown:
        raise CheckpointError(f'{len(unknown)} keys of the detectron2 Mask2Former checkpoint have no mmdet/mmseg '
                              f'counterpart: {unknown[:5]}')
    if class_order is not None:
        classes = out[f'{head}.cls_embed.weight'].shape[0] - 1
        if sorted(class_order) != list(range(classes)):
            raise CheckpointError(f'class_order must be a permutation of the checkpoint\'s {classes} classes, got '
                                  f'{len(class_order)} entries')
        for suffix in ('weight', 'bias'):
            rows = out[f'{head}.cls_embed.{suffix}']
            out[f'{head}.cls_embed.{suffix}'] = torch.cat([rows[list(class_order)], rows[-1:]])
    return out, dropped
