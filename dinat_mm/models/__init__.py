"""The DiNAT / NAT backbone; knows nothing of checkpoint formats."""
from .dinat import DiNAT, NAT
from .variants import ARCH_SETTINGS

__all__ = ['DiNAT', 'NAT', 'ARCH_SETTINGS']
