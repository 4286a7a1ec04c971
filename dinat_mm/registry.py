"""Registration into OpenMMLab: the one place dinat_mm touches the registries, mmengine's and
torch's weights-only allowlist.

Everything goes into mmengine's root registries. mmdet's, mmseg's and mmpretrain's registries are
their children and search their parent, so ``type='DiNAT'`` (and the hooks and optimizer wrapper the
tools use) builds under ``default_scope='mmdet'``, ``'mmseg'`` and ``'mmpretrain'`` alike once a
config imports ``dinat_mm``.
"""
import importlib

import torch
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS

from dinat_mm_versions import close_mmpretrain_multimodal_gate

from .checkpoint.loading import allowed_globals
from .models import NAT, DiNAT, DiNAT_s, NATIsotropic
from .runner import (AtomicCheckpointHook, BF16FeaturesHook, CompileHook, CPUBF16OptimWrapper, RNGStateHook,
                     SyncNormStatsHook)

# force: a re-import registers the same classes again instead of failing
for _cls in (DiNAT, NAT, DiNAT_s, NATIsotropic):
    MODELS.register_module(module=_cls, force=True)
for _cls in (RNGStateHook, AtomicCheckpointHook, SyncNormStatsHook, BF16FeaturesHook, CompileHook):
    HOOKS.register_module(module=_cls, force=True)
OPTIM_WRAPPERS.register_module(module=CPUBF16OptimWrapper, force=True)

# mmdet's DetInferencer and init_detector, mmseg's MMSegInferencer and init_model load checkpoints
# with torch.load's weights-only default (torch >= 2.6), which refuses the plain data mmengine's
# training checkpoints hold (numpy scalars, HistoryBuffer). Every config imports dinat_mm before
# they load, so allowlisting exactly those types here lets them read tools/train.py's checkpoints;
# anything that names other Python objects (code) is still refused.
torch.serialization.add_safe_globals(allowed_globals())


# transformers >= 4.56 beside mmpretrain 1.2.0: closed before any config imports mmpretrain's models
# (the environment's start-up hook does the same earlier; see dinat_mm_versions)
close_mmpretrain_multimodal_gate()

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')  # the OpenMMLab libraries whose configs dinat_mm's tools take


def scope_models(scope: str):
    """The MODELS registry of an OpenMMLab library (one of :data:`SCOPES`), with all of that
    library's modules registered: how the tools, the export and the benchmark build a config's
    model."""
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    importlib.import_module(f'{scope}.utils').register_all_modules()
    return importlib.import_module(f'{scope}.registry').MODELS
