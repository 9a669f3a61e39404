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
from .dvclive_backend import SafeDVCLiveVisBackend
from .metrics import ClassIoUMetric
from .models import ConcatFPNHead
from .scores import SaveDecodeScoresHook

__version__ = '0.1.0'

__all__ = [
    'ClassIoUMetric', 'ConcatFPNHead', 'PlainCheckpointHook',
    'SafeDVCLiveVisBackend', 'SaveDecodeScoresHook', 'UnsafeCheckpointError',
    'load_local_checkpoint'
]
