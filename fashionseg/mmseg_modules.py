"""Everything the harness adds to MMSegmentation's registries: importing
this module registers the datasets (:mod:`custom_datasets`), the paper's
FPN neck and head, the test metric, the inference engine's loops, the bf16 optimiser wrapper, the score-saving and checkpoint
hooks, the weights-only checkpoint loaders (local files and URLs) and the
DVCLive backend. Configs do it with
``custom_imports = dict(imports=['fashionseg.mmseg_modules'])``
(``mmseg_configs/_base_/default_runtime.py``)."""
from custom_datasets.ccp import CCPDataset
from custom_datasets.cfpd import CFPDDataset
from custom_datasets.fashionista import FashionistaDataset
from fashionseg.engine.checkpoint import (PlainCheckpointHook,
                                          UnsafeCheckpointError,
                                          load_local_checkpoint)
from fashionseg.engine.checkpoint_saving import SafeCheckpointHook
from fashionseg.engine.checkpoint_urls import load_url_checkpoint
from fashionseg.engine.dvclive_backend import SafeDVCLiveVisBackend
from fashionseg.engine.mixed_precision import BF16OptimWrapper
from fashionseg.engine.score_hook import SaveDecodeScoresHook
from fashionseg.engine.segmenter_loops import (SegmenterTestLoop,
                                               SegmenterValLoop)
from fashionseg.evaluation.iou_metric import ClassIoUMetric
from fashionseg.models import ConcatFPNHead, PaperFPN

__all__ = [
    'BF16OptimWrapper', 'CCPDataset', 'CFPDDataset', 'ClassIoUMetric', 'ConcatFPNHead',
    'FashionistaDataset', 'PlainCheckpointHook', 'SafeDVCLiveVisBackend',
    'SaveDecodeScoresHook', 'SegmenterTestLoop', 'SegmenterValLoop',
    'UnsafeCheckpointError', 'load_local_checkpoint',
    'load_url_checkpoint', 'PaperFPN', 'SafeCheckpointHook'
]
