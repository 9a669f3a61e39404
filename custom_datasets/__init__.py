"""The paper's datasets as MMSegmentation datasets, and readers for their
raw releases.

The dataset classes (``FashionistaDataset``, ``CFPDDataset``, ``CCPDataset``
in ``custom_datasets.fashionista``, ``.cfpd`` and ``.ccp``) register in
``mmseg``'s ``DATASETS`` registry when imported, as
``custom_datasets.mmseg_datasets`` does; this package itself imports nothing
from MMSegmentation, so that the CRF, report and figure tools start quickly.
"""
from .classes import CCP_CLASSES, CFPD_CLASSES, FASHIONISTA_CLASSES
from .records import DatasetFormatError
from .writer import OutputFolderError

__all__ = [
    'CCP_CLASSES', 'CFPD_CLASSES', 'FASHIONISTA_CLASSES', 'DatasetFormatError',
    'OutputFolderError'
]
