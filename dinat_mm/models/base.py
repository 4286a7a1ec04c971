"""What every backbone family shares beyond its layers: the release's initialisation or a
``Pretrained`` checkpoint of any supported layout, and activation checkpointing per layer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule

from ..checkpoint import load_into_backbone
from .layers import init_release_weights


class ReleaseBackbone(BaseModule):
    """A backbone with the release's parameter names; subclasses set ``with_cp``."""

    with_cp = False

    def init_weights(self):
        pretrained = self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained'
        if self.init_cfg is not None and not pretrained:
            super().init_weights()  # any other mmengine initializer
            return
        init_release_weights(self)  # also what a checkpoint leaves missing
        if pretrained:
            # Any supported layout (release, detector, Hugging Face, ours), loaded without running code.
            load_into_backbone(self, self.init_cfg['checkpoint'], self.init_cfg.get('map_location', 'cpu'))
        self._is_init = True

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and torch.is_grad_enabled():
            return cp.checkpoint(layer, x, use_reentrant=False)
        return layer(x)
