"""A raw release's records as its reader yields them, and the checks every
record passes before it is written (:mod:`custom_datasets.writer`): the
photo is a JPEG that decodes, the label map is a 2-D map of whole numbers
of the photo's size, with values among the dataset's classes."""
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fashionseg.errors import DataError

JPEG_MAGIC = b'\xff\xd8\xff'


class DatasetFormatError(DataError):
    """A raw release that does not have the expected content."""


@dataclass
class Sample:
    """One photo and its label map as read from a raw release."""
    stem: str
    position: int  # 1-based record position in the release, for messages
    image_bytes: bytes  # the JPEG file as released
    label: np.ndarray  # H x W label indices
    source: str  # the file the record came from, for messages

    def error(self, problem: str) -> DatasetFormatError:
        return DatasetFormatError(
            f'{self.source}: record {self.position} ({self.stem}): {problem}')


def decode_label_png(data: bytes) -> np.ndarray:
    """Label indices of an 8-bit grey or palette PNG (palette indices are the
    labels, not the colours)."""
    image = Image.open(io.BytesIO(data))
    if image.mode not in ('L', 'P'):
        raise ValueError(f'annotation PNG has mode {image.mode}, expected a '
                         'single-channel (L or P) image of label indices')
    return np.asarray(image)


def jpeg_size(sample: Sample):
    """(height, width) of the sample's photo, after checking it decodes."""
    if not sample.image_bytes.startswith(JPEG_MAGIC):
        raise sample.error('photo is not a JPEG file')
    try:
        with Image.open(io.BytesIO(sample.image_bytes)) as image:
            image.load()
            width, height = image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise sample.error(f'photo does not decode ({error})') from None
    return height, width


def integer_values(values, what) -> np.ndarray:
    """``values`` as int64 if every one is a whole number; otherwise the
    first value that is not (NaN, infinite or fractional), as
    ``ValueError`` naming ``what``."""
    values = np.asarray(values)
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f'{what} has type {values.dtype}, expected numbers')
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        first = values[bad].ravel()[0].item()
        raise ValueError(f'{what} holds {first!r}, which is not a whole '
                         'number')
    return values.astype(np.int64)


def integer_positions(values, path, name) -> list:
    """A MATLAB index list (``test_index``) as Python ints, checked."""
    try:
        return integer_values(values, name).ravel().tolist()
    except ValueError as error:
        raise DatasetFormatError(f'{path}: {error}') from None


def check_sample(sample: Sample, num_classes: int) -> np.ndarray:
    """The sample's label map as uint8, after the format checks."""
    height, width = jpeg_size(sample)
    try:
        label = integer_values(sample.label, 'label map')
    except ValueError as error:
        raise sample.error(str(error)) from None
    if label.ndim != 2:
        raise sample.error(f'label map has shape {label.shape}, expected '
                           'a 2-D map')
    if label.shape != (height, width):
        raise sample.error(
            f'label map is {label.shape[0]} x {label.shape[1]} but the '
            f'photo is {height} x {width} (height x width)')
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        bad = sorted(set(np.unique(label).tolist()) -
                     set(range(num_classes)))
        raise sample.error(f'label values {bad[:10]} are outside '
                           f'0..{num_classes - 1}')
    return label.astype(np.uint8)
