"""Registration into OpenMMLab: the one place dinat_mm touches the registries.

The classes go into mmengine's root MODELS registry. mmdet's and mmseg's MODELS are its children
and search their parent, so ``type='DiNAT'`` builds under ``default_scope='mmdet'`` and
``default_scope='mmseg'`` alike once a config imports ``dinat_mm``.
"""
from mmengine.registry import MODELS

from .models import NAT, DiNAT

for _cls in (DiNAT, NAT):
    MODELS.register_module(module=_cls, force=True)  # force: re-imports re-register the same class
