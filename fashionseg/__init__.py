"""Reproducibility harness for Martinsson and Mogren, "Semantic Segmentation
of Fashion Images Using Feature Pyramid Networks" (ICCV workshops 2019).

Importing this package registers everything the harness adds to
MMSegmentation's registries: the datasets in :mod:`custom_datasets` and the
modules below. Configs do it with
``custom_imports = dict(imports=['fashionseg'])``.
"""
import custom_datasets  # noqa: F401  (registers the datasets)

from .checkpoint import (PlainCheckpointHook, UnsafeCheckpointError,
                         load_local_checkpoint)

__version__ = '0.1.0'

__all__ = [
    'PlainCheckpointHook', 'UnsafeCheckpointError', 'load_local_checkpoint'
]
