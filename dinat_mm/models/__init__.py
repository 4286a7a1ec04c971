"""The DiNAT / NAT / DiNAT_s backbones; know nothing of checkpoint formats."""
from .dinat import NAT, DiNAT, DiNAT_s
from .variants import ARCH_SETTINGS, DINAT_S_ARCH_SETTINGS

__all__ = ['DiNAT', 'NAT', 'DiNAT_s', 'ARCH_SETTINGS', 'DINAT_S_ARCH_SETTINGS']
