"""Everything the harness adds to MMSegmentation's registries: importing
this module registers the datasets (:mod:`custom_datasets`), the paper's
FPN head, the test metric, the score-saving and checkpoint hooks, the
weights-only checkpoint loader and the DVCLive backend. Configs do it with
``custom_imports = dict(imports=['fashionseg.mmseg_modules'])``
(``mmseg_configs/_base_/default_runtime.py``)."""
from custom_datasets.ccp import CCPDataset
from custom_datasets.cfpd import CFPDDataset
from custom_datasets.fashionista import FashionistaDataset

from .checkpoint import (PlainCheckpointHook, UnsafeCheckpointError,
                         load_local_checkpoint)
from .dvclive_backend import SafeDVCLiveVisBackend
from .metrics import ClassIoUMetric
from .models import ConcatFPNHead
from .scores import SaveDecodeScoresHook

__all__ = [
    'CCPDataset', 'CFPDDataset', 'ClassIoUMetric', 'ConcatFPNHead',
    'FashionistaDataset', 'PlainCheckpointHook', 'SafeDVCLiveVisBackend',
    'SaveDecodeScoresHook', 'UnsafeCheckpointError', 'load_local_checkpoint'
]
