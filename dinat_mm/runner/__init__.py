"""What configs name for mmengine's Runner: hooks and an optimizer wrapper. Registered by
:mod:`dinat_mm.registry`; nothing here reads command lines or checks data (that is
:mod:`dinat_mm.cli`, the tools' side)."""
from .amp import BF16FeaturesHook, CPUBF16OptimWrapper, bf16_features, cpu_bf16_support
from .checkpoint_hook import AtomicCheckpointHook
from .hooks import CompileHook, RNGStateHook, SyncNormStatsHook

__all__ = ['AtomicCheckpointHook', 'BF16FeaturesHook', 'CompileHook', 'CPUBF16OptimWrapper', 'RNGStateHook',
           'SyncNormStatsHook', 'bf16_features', 'cpu_bf16_support']
