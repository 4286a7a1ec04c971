"""Installed package versions, and the one fix they call for at start-up. Standard library only:
the environment's ``dinat_mm_versions.pth`` (written by scripts/setup_env.sh) imports this at every
interpreter start, where loading torch or OpenMMLab would cost seconds.

mmpretrain 1.2.0 imports its multimodal models (BLIP, CLIP, ...) whenever transformers is installed,
and they import names that ``transformers.modeling_utils`` no longer has from 4.56 on, so
``import mmpretrain.models`` fails, classifiers included. mmdet and mmseg import mmpretrain
themselves, so the fix must act before any of them: :func:`close_mmpretrain_multimodal_gate` sets
``mmpretrain.utils.dependency.WITH_MULTIMODAL`` False as that module is imported (or at once, if it
already is); mmpretrain then registers placeholders for those models.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Optional, Tuple

_DEPENDENCY = 'mmpretrain.utils.dependency'
_MULTIMODAL_BROKEN_FROM = (4, 56)  # the transformers whose modeling_utils mmpretrain 1.2.0's multimodal models outlive


def major_minor(text: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of a version string such as '4.57.6' or '5.0.0rc1'; None if it has no such prefix."""
    try:
        major, minor = text.split('.')[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def installed_major_minor(distribution: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of an installed distribution, None when it is not installed."""
    try:
        return major_minor(version(distribution))
    except PackageNotFoundError:
        return None


def _close(module) -> None:
    found = installed_major_minor('transformers')
    if found is not None and found >= _MULTIMODAL_BROKEN_FROM:
        module.WITH_MULTIMODAL = False


class _Gate(importlib.abc.MetaPathFinder):
    """Runs :func:`_close` on mmpretrain.utils.dependency right after that module's own code."""

    def find_spec(self, name, path=None, target=None):
        if name != _DEPENDENCY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_close(module):
            exec_module(module)
            _close(module)
        spec.loader.exec_module = exec_and_close
        return spec


def close_mmpretrain_multimodal_gate() -> None:
    """Close the gate for the imports of mmpretrain to come, and now if mmpretrain's dependency
    module is loaded already. Idempotent. Too late only once ``mmpretrain.models`` has been imported."""
    if not any(isinstance(finder, _Gate) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Gate())
    if _DEPENDENCY in sys.modules:
        _close(sys.modules[_DEPENDENCY])
