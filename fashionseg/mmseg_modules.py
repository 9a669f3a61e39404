"""Everything the harness adds to MMSegmentation's registries: importing
this module registers the paper's FPN neck and head, the test metric, the
inference engine's loops, the bf16 optimiser wrapper, the score-saving and
checkpoint hooks, the weights-only checkpoint loaders (local files and
URLs) and the DVCLive backend; :mod:`custom_datasets.mmseg_datasets`
registers the datasets. Configs import both with ``custom_imports``
(``mmseg_configs/_base_/default_runtime.py``)."""
from fashionseg.checkpoints.loading import (PlainCheckpointHook,
                                            UnsafeCheckpointError,
                                            load_local_checkpoint)
from fashionseg.checkpoints.saving import SafeCheckpointHook
from fashionseg.checkpoints.urls import load_url_checkpoint
from fashionseg.evaluation.iou_metric import ClassIoUMetric
from fashionseg.inference.loops import SegmenterTestLoop, SegmenterValLoop
from fashionseg.models import ConcatFPNHead, PaperFPN
from fashionseg.runner.dvclive_backend import SafeDVCLiveVisBackend
from fashionseg.runner.mixed_precision import BF16OptimWrapper
from fashionseg.runner.score_hook import SaveDecodeScoresHook
from fashionseg.runner.speedups import (ChannelsLastHook,
                                        FastSegDataPreProcessor)

__all__ = [
    'BF16OptimWrapper', 'ChannelsLastHook', 'ClassIoUMetric', 'ConcatFPNHead',
    'FastSegDataPreProcessor',
    'PlainCheckpointHook', 'SafeDVCLiveVisBackend',
    'SaveDecodeScoresHook', 'SegmenterTestLoop', 'SegmenterValLoop',
    'UnsafeCheckpointError', 'load_local_checkpoint',
    'load_url_checkpoint', 'PaperFPN', 'SafeCheckpointHook'
]
