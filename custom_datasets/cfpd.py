"""CFPD (Colorful Fashion Parsing Data), 23 classes, as used in the paper
(section 4.1).

The release is ``fashon_parsing_data.mat`` (sic; MATLAB v7.3, i.e. HDF5)
beside a folder ``image/`` of 600 x 400 JPEG photos. ``fashion_dataset`` is a
cell array of references to one struct per photo: ``img_name`` (char array),
``segmentation`` (0-based superpixel ids, stored transposed) and
``category_label`` (the 1-based class of each superpixel). Pixel p's label is
``category_label[segmentation[p]] - 1``. Splits:
:func:`custom_datasets.splits.cfpd_splits`.
"""
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from mmseg.registry import DATASETS

from fashionseg.palette import label_palette

from .base import FashionParsingDataset
from .classes import CFPD_CLASSES
from .matlab import char_array_to_str, check_names, deref, open_h5_mat, require
from .records import DatasetFormatError, Sample
from .splits import cfpd_splits

CFPD_MAT = 'fashon_parsing_data.mat'
CFPD_IMAGES = 'image'


@DATASETS.register_module()
class CFPDDataset(FashionParsingDataset):
    """CFPD in the layout ``tools/convert_data.py`` writes."""
    METAINFO = dict(classes=CFPD_CLASSES,
                    palette=label_palette(len(CFPD_CLASSES)))


class CFPDRelease:
    """Reader of ``fashon_parsing_data.mat`` and ``image/``."""

    def __init__(self, src: Path):
        src = Path(src)
        self.root = src
        self.path = src / CFPD_MAT
        self.image_dir = src / CFPD_IMAGES
        if not self.path.is_file():
            raise DatasetFormatError(f'{self.path}: file not found')
        if not self.image_dir.is_dir():
            raise DatasetFormatError(f'{self.image_dir}: folder not found')
        if not h5py.is_hdf5(str(self.path)):
            raise DatasetFormatError(
                f'{self.path}: not a MATLAB v7.3 (HDF5) file')
        self._h5 = open_h5_mat(self.path)
        self._refs = np.asarray(
            require(self._h5, 'fashion_dataset', self.path)).ravel()
        names = [char_array_to_str(deref(self._h5, ref,
                                         'all_category_name')[()])
                 for ref in np.asarray(require(
                     self._h5, 'all_category_name', self.path)).ravel()]
        check_names(names, CFPD_CLASSES, self.path, 'all_category_name')
        self.num_samples = len(self._refs)
        self._names = None

    def _record(self, index: int):
        position = index + 1
        record = deref(self._h5, self._refs[index],
                       f'fashion_dataset record {position}')
        if not isinstance(record, h5py.Group):
            raise DatasetFormatError(
                f'{self.path}: fashion_dataset record {position} is not a '
                'struct')
        return record

    def _field(self, record, name: str, position: int):
        if name not in record:
            raise DatasetFormatError(
                f'{self.path}: fashion_dataset record {position}: field '
                f'"{name}" is missing')
        return record[name][()]

    def image_names(self):
        """``img_name`` of every record, in file order."""
        if self._names is None:
            self._names = [
                char_array_to_str(self._field(self._record(i), 'img_name',
                                              i + 1))
                for i in range(self.num_samples)]
        return self._names

    def splits(self):
        """Split of each stem, by position (see ``cfpd_splits``)."""
        stems = [Path(name).stem for name in self.image_names()]
        return {split: [stems[p - 1] for p in positions]
                for split, positions in cfpd_splits(self.num_samples).items()}

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[Sample]:
        for index, name in enumerate(self.image_names()):
            position = index + 1
            record = self._record(index)
            sample = Sample(stem=Path(name).stem, position=position,
                            image_bytes=b'', label=None,
                            source=str(self.path))
            photo = self.image_dir / (name if Path(name).suffix
                                      else f'{name}.jpg')
            if not photo.is_file():
                raise sample.error(f'photo {photo} is missing')
            sample.image_bytes = photo.read_bytes()
            sample.source = f'{self.path} (photo {photo})'
            segmentation = np.asarray(
                self._field(record, 'segmentation', position))
            # MATLAB arrays are stored transposed in HDF5.
            segmentation = segmentation.T
            category = np.asarray(
                self._field(record, 'category_label', position)).ravel()
            if segmentation.size and (segmentation.min() < 0 or
                                      segmentation.max() >= len(category)):
                raise sample.error(
                    f'segmentation holds superpixel id '
                    f'{int(segmentation.max())} but category_label has '
                    f'{len(category)} entries (ids are 0-based)')
            label = category.astype(np.int64)[segmentation.astype(
                np.int64)] - 1
            sample.label = label
            yield sample

    def close(self) -> None:
        self._h5.close()
