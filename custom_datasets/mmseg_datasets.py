"""The three datasets in MMSegmentation's ``DATASETS`` registry: importing
this module registers ``FashionistaDataset``, ``CFPDDataset`` and
``CCPDataset``. Configs do it with ``custom_imports`` beside
:mod:`fashionseg.mmseg_modules` (``mmseg_configs/_base_/
default_runtime.py``)."""
from .ccp import CCPDataset
from .cfpd import CFPDDataset
from .fashionista import FashionistaDataset

__all__ = ['CCPDataset', 'CFPDDataset', 'FashionistaDataset']
