"""Refined Fashionista (v1.0), 25 classes, as used in the paper (section 4.1).

The release is one MATLAB file, ``fashionista-v1.0.mat``: ``truths`` is a
1 x N struct array whose ``image`` field holds each photo's JPEG bytes and
whose ``annotation`` field holds a PNG of 0-based label indices;
``test_index`` lists the 1-based test positions; ``labels`` the 25 names.
Splits: :func:`custom_datasets.splits.fashionista_splits`.
"""
from pathlib import Path
from typing import Iterator, List

import numpy as np
from mmseg.registry import DATASETS

from fashionseg.palette import label_palette

from .base import FashionParsingDataset
from .classes import FASHIONISTA_CLASSES
from .matlab import (char_array_to_str, check_names, deref, is_hdf5_mat,
                     open_h5_mat, read_mat, require)
from .records import (DatasetFormatError, Sample, decode_label_png,
                      integer_positions)
from .splits import fashionista_splits

FASHIONISTA_MAT = 'fashionista-v1.0.mat'


@DATASETS.register_module()
class FashionistaDataset(FashionParsingDataset):
    """Refined Fashionista in the layout ``tools/convert_data.py`` writes."""
    METAINFO = dict(classes=FASHIONISTA_CLASSES,
                    palette=label_palette(len(FASHIONISTA_CLASSES)))


def fashionista_stem(position: int) -> str:
    return f'{position:04d}'


class FashionistaRelease:
    """Reader of ``fashionista-v1.0.mat`` (MATLAB v7, or v7.3 / HDF5)."""

    def __init__(self, src: Path):
        src = Path(src)
        self.path = src / FASHIONISTA_MAT if src.is_dir() else src
        if not self.path.is_file():
            raise DatasetFormatError(f'{self.path}: file not found')
        self.hdf5 = is_hdf5_mat(self.path)
        if self.hdf5:
            self._h5 = open_h5_mat(self.path)
            truths = require(self._h5, 'truths', self.path)
            self._fields = {
                name: np.asarray(require(truths, name, self.path,
                                         'field of truths')).ravel()
                for name in ('image', 'annotation')}
            test_index = np.asarray(
                require(self._h5, 'test_index', self.path)[()])
            labels = [char_array_to_str(deref(self._h5, ref, 'labels')[()])
                      for ref in np.asarray(
                          require(self._h5, 'labels', self.path)).ravel()]
            self.num_samples = len(self._fields['image'])
            if len(self._fields['annotation']) != self.num_samples:
                raise DatasetFormatError(
                    f'{self.path}: truths has {self.num_samples} images but '
                    f'{len(self._fields["annotation"])} annotations')
        else:
            mat = read_mat(self.path)
            truths = np.asarray(require(mat, 'truths', self.path)).ravel()
            for name in ('image', 'annotation'):
                require(truths, name, self.path, 'field of truths')
            self._truths = truths
            test_index = np.asarray(require(mat, 'test_index', self.path))
            labels = [char_array_to_str(name) for name in np.asarray(
                require(mat, 'labels', self.path)).ravel()]
            self.num_samples = len(truths)
        check_names(labels, FASHIONISTA_CLASSES, self.path, 'labels',
                    aliases={'null': 'background'})
        self.test_positions: List[int] = integer_positions(
            test_index, self.path, 'test_index')

    def splits(self):
        """Stems of each split (see ``fashionista_splits``)."""
        try:
            splits = fashionista_splits(self.num_samples, self.test_positions)
        except ValueError as error:
            raise DatasetFormatError(f'{self.path}: {error}') from None
        return {split: [fashionista_stem(p) for p in positions]
                for split, positions in splits.items()}

    def _field_bytes(self, index: int, name: str) -> bytes:
        position = index + 1
        what = f'record {position} ({fashionista_stem(position)}): field ' \
               f'"{name}"'
        if self.hdf5:
            value = deref(self._h5, self._fields[name][index], what)[()]
        else:
            value = self._truths[index][name]
        value = np.asarray(value)
        if value.dtype != np.uint8:
            raise DatasetFormatError(
                f'{self.path}: {what} is {value.dtype}, expected a uint8 '
                'vector of file bytes')
        return value.ravel().tobytes()

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[Sample]:
        for index in range(self.num_samples):
            position = index + 1
            sample = Sample(
                stem=fashionista_stem(position), position=position,
                image_bytes=self._field_bytes(index, 'image'),
                label=None, source=str(self.path))
            try:
                sample.label = decode_label_png(
                    self._field_bytes(index, 'annotation'))
            except (OSError, ValueError, SyntaxError) as error:
                if isinstance(error, DatasetFormatError):
                    raise
                raise sample.error(
                    f'annotation does not decode as a PNG ({error})') from None
            yield sample

    def close(self) -> None:
        if self.hdf5:
            self._h5.close()
