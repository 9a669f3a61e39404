"""The paper's datasets as MMSegmentation datasets, and readers for their
raw releases. Importing this package registers ``FashionistaDataset``,
``CFPDDataset`` and ``CCPDataset`` in ``mmseg``'s ``DATASETS`` registry."""
from .ccp import CCP_CLASSES, CCPDataset, CCPRelease
from .cfpd import CFPD_CLASSES, CFPDDataset, CFPDRelease
from .fashionista import (FASHIONISTA_CLASSES, FashionistaDataset,
                          FashionistaRelease)
from .layout import DatasetFormatError

__all__ = [
    'CCP_CLASSES', 'CCPDataset', 'CCPRelease', 'CFPD_CLASSES', 'CFPDDataset',
    'CFPDRelease', 'FASHIONISTA_CLASSES', 'FashionistaDataset',
    'FashionistaRelease', 'DatasetFormatError'
]
