"""Neighborhood-attention operator; knows nothing of OpenMMLab."""
from .na2d import BACKENDS, na2d

__all__ = ['na2d', 'BACKENDS']
