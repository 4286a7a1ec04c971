"""Installed into the environment's site-packages by scripts/setup_env.sh (with a .pth file that
imports it at start-up), so that it acts before any import of mmpretrain, including mmdet's and
mmseg's imports of it: once ``mmpretrain.utils.dependency`` has run, its ``WITH_MULTIMODAL`` is
set False when transformers >= 4.56 is installed. mmpretrain 1.2.0's multimodal models import
names transformers 4.56 removed, so with the gate open ``import mmpretrain.models`` fails.
(``import dinat_mm`` closes the same gate for environments without this file.) Stdlib only."""
import importlib.abc
import importlib.machinery
import sys
from importlib.metadata import PackageNotFoundError, version

TARGET = 'mmpretrain.utils.dependency'


def _transformers_too_new() -> bool:
    try:
        return tuple(int(p) for p in version('transformers').split('.')[:2]) >= (4, 56)
    except (PackageNotFoundError, ValueError):
        return False


class _Gate(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_close(module):
            exec_module(module)
            if _transformers_too_new():
                module.WITH_MULTIMODAL = False
        spec.loader.exec_module = exec_and_close
        return spec


if not any(isinstance(f, _Gate) for f in sys.meta_path):
    sys.meta_path.insert(0, _Gate())
