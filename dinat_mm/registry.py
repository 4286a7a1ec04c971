"""Registration into OpenMMLab: the one place dinat_mm touches the registries.

Everything goes into mmengine's root registries. mmdet's and mmseg's registries are their children
and search their parent, so ``type='DiNAT'`` (and the hook and optimizer wrapper the tools use)
builds under ``default_scope='mmdet'`` and ``default_scope='mmseg'`` alike once a config imports
``dinat_mm``.
"""
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS

from .engine import BF16FeaturesHook, CompileHook, CPUBF16OptimWrapper, RNGStateHook
from .models import NAT, DiNAT

# force: a re-import registers the same classes again instead of failing
for _cls in (DiNAT, NAT):
    MODELS.register_module(module=_cls, force=True)
HOOKS.register_module(module=RNGStateHook, force=True)
HOOKS.register_module(module=BF16FeaturesHook, force=True)
HOOKS.register_module(module=CompileHook, force=True)
OPTIM_WRAPPERS.register_module(module=CPUBF16OptimWrapper, force=True)
