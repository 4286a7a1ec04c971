"""Hugging Face transformers' DiNAT (``DinatModel``, ``DinatForImageClassification``,
``DinatBackbone``) on dinat_mm's operator: call :func:`enable` once, before building them.

transformers' ``modeling_dinat`` cannot run as shipped. At import it takes ``natten2dqkrpb`` and
``natten2dav`` from natten whenever natten is installed, and natten removed them in 0.17.5; without
natten every Dinat class refuses to build. Its attention's forward also splits the heads wrongly
(4.57 unpacks a 4-D map as 3-D; 5.x hands the ops [batch, width, height, heads, head_dim]), so
providing the two ops alone would not make it compute DiNAT. :func:`enable` therefore touches
three names in that one module, and nothing else of transformers:

- the module is imported with transformers' natten check answering False, so the failing import
  is skipped (this module only; transformers' own answer is restored at once);
- its ``requires_backends`` no longer asks for natten;
- ``NeighborhoodAttention.forward`` runs :func:`dinat_mm.ops.na2d` (the fused operator: the CPU
  kernel, or the Triton kernels on CUDA), or, when attention probabilities are asked for, the
  window weights and weighted values of :mod:`dinat_mm.ops.gather_backend`, with HF's shape.

The parameters, their names and the module tree stay transformers', so ``from_pretrained`` reads
hub checkpoints unchanged.
"""
from __future__ import annotations

import importlib
from typing import Optional, Tuple

import torch

from dinat_mm_versions import major_minor

from .errors import UserError
from .ops import na2d
from .ops.gather_backend import attention_weights, weighted_values

# The transformers releases whose modeling_dinat this patches: 4.57.x and 5.0 up to 5.24, the newest
# that installs beside torch 2.14 (docs/huggingface.md says which were run).
SUPPORTED = (((4, 57), (4, 57)), ((5, 0), (5, 24)))
_MODULE = 'transformers.models.dinat.modeling_dinat'


def supported(version: str) -> bool:
    found = major_minor(version)
    return found is not None and any(low <= found <= high for low, high in SUPPORTED)


def enable():
    """Make transformers' Dinat classes build and run on dinat_mm's operator; returns transformers'
    ``modeling_dinat`` module. Idempotent. Works whether natten is absent or installed without the
    old ops. An unsupported transformers is a :class:`dinat_mm.errors.UserError` naming its version."""
    try:
        import transformers
    except ImportError as err:
        raise UserError('dinat_mm.hf.enable() needs transformers (pip install "transformers==4.57.6")') from err
    if not supported(transformers.__version__):
        ranges = ', '.join(f'{lo[0]}.{lo[1]}' if lo == hi else f'{lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}'
                           for lo, hi in SUPPORTED)
        raise UserError(f'transformers {transformers.__version__} is not supported by dinat_mm.hf '
                        f'(supported: {ranges})')
    modeling = _import_without_natten_ops()
    if getattr(modeling, '_dinat_mm_enabled', False):
        return modeling
    modeling.requires_backends = _without_natten(modeling.requires_backends)
    modeling.NeighborhoodAttention.forward = neighborhood_attention_forward
    modeling._dinat_mm_enabled = True
    return modeling


def _import_without_natten_ops():
    utils = importlib.import_module('transformers.utils')
    natten_check = utils.is_natten_available
    utils.is_natten_available = lambda: False
    try:
        return importlib.import_module(_MODULE)
    finally:
        utils.is_natten_available = natten_check


def _without_natten(requires_backends):
    def requires_backends_but_natten(obj, backends):
        backends = [backends] if isinstance(backends, str) else list(backends)
        rest = [b for b in backends if b != 'natten']
        if rest:
            requires_backends(obj, rest)
    return requires_backends_but_natten


def neighborhood_attention_forward(self, hidden_states: torch.Tensor, output_attentions: Optional[bool] = False
                                   ) -> Tuple[torch.Tensor, ...]:
    """transformers' ``NeighborhoodAttention.forward``: [batch, height, width, channels] (already
    padded to the window by ``DinatLayer``) to the attended values in the same layout, plus the
    attention probabilities [batch, heads, height, width, kernel_size**2] (after dropout, as HF
    returns them) when ``output_attentions``."""
    batch, height, width, _ = hidden_states.shape
    heads, head_dim = self.num_attention_heads, self.attention_head_size

    def split_heads(linear):  # [batch, heads, height, width, head_dim]
        return linear(hidden_states).view(batch, height, width, heads, head_dim).permute(0, 3, 1, 2, 4)

    query, key, value = split_heads(self.query), split_heads(self.key), split_heads(self.value)
    scale = head_dim ** -0.5
    kernel, dilation = (self.kernel_size,) * 2, (self.dilation,) * 2
    if output_attentions:
        probs = self.dropout(attention_weights(query, key, kernel, dilation, self.rpb, scale))
        context = weighted_values(probs, value, kernel, dilation)
    else:
        attn_drop = self.dropout.p if self.training else 0.0
        context = na2d(query, key, value, kernel, dilation, rpb=self.rpb, scale=scale, attn_drop=attn_drop)
    context = context.permute(0, 2, 3, 1, 4).reshape(batch, height, width, heads * head_dim)
    return (context, probs) if output_attentions else (context,)
