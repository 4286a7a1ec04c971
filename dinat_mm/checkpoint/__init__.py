"""Checkpoint formats and the one safe loader; knows nothing of the model classes."""
from .backbone_loading import load_into_backbone, read_checkpoint
from .classifier_loading import classifier_state, load_into_classifier
from .formats import detect, is_mmpretrain_classifier, resize_rpb, to_backbone, to_classifier, unwrap
from .loading import CheckpointError, load_checkpoint_file, require_checkpoint, trusted_checkpoint_types

__all__ = ['CheckpointError', 'load_checkpoint_file', 'require_checkpoint', 'trusted_checkpoint_types', 'detect',
           'unwrap', 'to_backbone', 'to_classifier', 'resize_rpb', 'read_checkpoint', 'load_into_backbone',
           'classifier_state', 'load_into_classifier', 'is_mmpretrain_classifier']
