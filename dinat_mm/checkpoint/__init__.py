"""Checkpoint formats and the one safe loader; knows nothing of the model classes."""
from .formats import detect, resize_rpb, to_backbone, unwrap
from .into_model import load_into_backbone, read_checkpoint
from .loading import CheckpointError, load_checkpoint_file, trusted_checkpoint_types

__all__ = ['CheckpointError', 'load_checkpoint_file', 'trusted_checkpoint_types', 'detect', 'unwrap',
           'to_backbone', 'resize_rpb', 'read_checkpoint', 'load_into_backbone']
