"""The DiNAT / NAT / DiNAT_s backbones, their variant table, and the isotropic NAT/DiNAT. A ``Pretrained`` init_cfg loads
through :func:`dinat_mm.checkpoint.load_into_backbone` (as mmdet's backbones call mmengine's
loader); the checkpoint layouts and key maps live in :mod:`dinat_mm.checkpoint`, not here."""
from .dinat import NAT, DiNAT, DiNAT_s
from .isotropic import NATIsotropic
from .variants import ARCH_SETTINGS, DINAT_S_ARCH_SETTINGS

__all__ = ['DiNAT', 'NAT', 'DiNAT_s', 'NATIsotropic', 'ARCH_SETTINGS', 'DINAT_S_ARCH_SETTINGS']
