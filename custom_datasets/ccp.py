"""Clothing Co-Parsing (CCP), 59 classes: the third, openly available
dataset of the harness (the paper uses Fashionista and CFPD, section 4.1).

The release is the repository layout of bearpaw/clothing-co-parsing:
``label_list.mat`` (``label_list``, 59 names, 0 = null), ``photos/NNNN.jpg``
and, for the 1004 photos with pixel labels,
``annotations/pixel-level/NNNN.mat`` (``groundtruth``, H x W label indices).
Splits: :func:`custom_datasets.splits.ccp_splits`.
"""
from pathlib import Path
from typing import Iterator, List

import numpy as np
from mmseg.registry import DATASETS

from fashionseg.palette import label_palette

from .base import FashionParsingDataset
from .classes import CCP_CLASSES
from .matlab import char_array_to_str, check_names, read_mat, require
from .records import DatasetFormatError, Sample
from .splits import ccp_splits


@DATASETS.register_module()
class CCPDataset(FashionParsingDataset):
    """CCP in the layout ``tools/convert_data.py`` writes."""
    METAINFO = dict(classes=CCP_CLASSES,
                    palette=label_palette(len(CCP_CLASSES)))


class CCPRelease:
    """Reader of the clothing-co-parsing repository layout."""

    def __init__(self, src: Path):
        self.root = Path(src)
        self.label_list = self.root / 'label_list.mat'
        self.photo_dir = self.root / 'photos'
        self.annotation_dir = self.root / 'annotations' / 'pixel-level'
        for path in (self.label_list, self.photo_dir, self.annotation_dir):
            if not path.exists():
                raise DatasetFormatError(f'{path}: not found')
        names = [char_array_to_str(name) for name in np.asarray(require(
            read_mat(self.label_list), 'label_list',
            self.label_list)).ravel()]
        check_names(names, CCP_CLASSES, self.label_list, 'label_list')
        self.annotations: List[Path] = sorted(
            self.annotation_dir.glob('*.mat'))
        for path in self.annotations:
            if not path.stem.isdigit():
                raise DatasetFormatError(
                    f'{path}: expected a numeric id as the file name')
        self.num_samples = len(self.annotations)

    def ids(self) -> List[int]:
        return [int(path.stem) for path in self.annotations]

    def splits(self):
        return {split: [f'{i:04d}' for i in ids]
                for split, ids in ccp_splits(self.ids()).items()}

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[Sample]:
        for position, path in enumerate(self.annotations, start=1):
            stem = f'{int(path.stem):04d}'
            photo = self.photo_dir / f'{path.stem}.jpg'
            sample = Sample(stem=stem, position=position, image_bytes=b'',
                            label=None, source=str(path))
            if not photo.is_file():
                raise sample.error(f'photo {photo} is missing')
            sample.image_bytes = photo.read_bytes()
            sample.label = np.asarray(
                require(read_mat(path), 'groundtruth', path))
            yield sample

    def close(self) -> None:
        pass
