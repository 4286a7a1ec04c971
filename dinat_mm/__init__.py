"""dinat_mm: the DiNAT backbone for OpenMMLab 2.x (mmdet 3.x, mmsegmentation 1.x, mmpretrain 1.x).

``import dinat_mm`` (or ``custom_imports=dict(imports=['dinat_mm'])`` in a config) registers the
``DiNAT``, ``NAT``, ``DiNAT_s`` and ``NATIsotropic`` backbones.
"""
from . import registry  # noqa: F401  (registers the backbones, hooks and optimizer wrapper)
from .models import NAT, DiNAT, DiNAT_s, NATIsotropic
from .ops import na2d

__version__ = '0.1.0'
__all__ = ['DiNAT', 'NAT', 'DiNAT_s', 'NATIsotropic', 'na2d', '__version__']
