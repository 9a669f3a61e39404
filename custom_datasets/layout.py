"""Writing a converted dataset in MMSegmentation's folder layout.

``OUT/img_dir/{train,val,test}/STEM.jpg`` (the release's JPEG bytes,
unchanged), ``OUT/ann_dir/{train,val,test}/STEM.png`` (8-bit single-channel
label indices, the photo's size), ``OUT/splits/{train,val,test}.txt`` (one
stem a line, in file order) and ``OUT/dataset.json`` (the dataset's name,
classes and split sizes, for tools that get only the folder). The dataset
is built in a temporary folder beside OUT and renamed into place only when
every record has passed its checks, so a failed or interrupted conversion
leaves nothing in OUT.
"""
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionseg.utils.atomic_write import replace_folder

from .splits import SPLITS

JPEG_MAGIC = b'\xff\xd8\xff'


class DatasetFormatError(ValueError):
    """A raw release that does not have the expected content."""


class OutputFolderError(ValueError):
    """An output folder the converter must not replace."""


def check_output_folder(out: Path, src: Optional[Path] = None) -> None:
    """Refuse an ``out`` that is ``src`` or holds it (replacing it would
    delete the release), and an existing ``out`` that is not a dataset this
    converter wrote (its ``dataset.json``): only those are replaced."""
    out = Path(out).resolve()
    if src is not None:
        src = Path(src).resolve()
        if out == src or out in src.parents:
            raise OutputFolderError(
                f'--out {out} is or holds --src {src}: converting would '
                'replace the raw release; choose an --out outside it')
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputFolderError(f'--out {out} exists and is not a folder')
    if (out / 'dataset.json').is_file() or not any(out.iterdir()):
        return
    raise OutputFolderError(
        f'--out {out} exists and is not a dataset written by '
        'tools/convert_data.py (it has no dataset.json); it is left as it '
        'is. Choose another --out, or move that folder away yourself')


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


def encode_label_png(label: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(label, mode='L').save(buffer, format='PNG')
    return buffer.getvalue()


def downscale(image_bytes: bytes, label: np.ndarray, max_size: int):
    """The photo (re-encoded JPEG, area-averaged) and label map (nearest
    neighbour) scaled so that the longer side is ``max_size``; unchanged
    when already no larger."""
    height, width = label.shape
    scale = max_size / max(height, width)
    if scale >= 1:
        return image_bytes, label
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    with Image.open(io.BytesIO(image_bytes)) as image:
        small = image.convert('RGB').resize(size, Image.Resampling.BOX)
    buffer = io.BytesIO()
    small.save(buffer, format='JPEG', quality=95)
    small_label = Image.fromarray(label, mode='L').resize(
        size, Image.Resampling.NEAREST)
    return buffer.getvalue(), np.asarray(small_label)


def write_dataset(samples: Iterable[Sample], split_of: Dict[str, str],
                  out: Path, name: str, classes: tuple, total: int = None,
                  max_size: Optional[int] = None) -> Dict[str, int]:
    """Check and write ``samples`` to ``out`` atomically.

    Args:
        samples: the records, in the release's file order.
        split_of: split name of each stem; stems not in it are skipped.
        out: the dataset folder to create (replaced if it exists).
        name, classes: the dataset's name and class names; labels must lie
            in ``0..len(classes) - 1``.
        max_size: scale photos and label maps down so that their longer
            side is at most this (for quick runs; None keeps the release's
            JPEG bytes unchanged).

    Returns:
        The number of samples written to each split.
    """
    out = Path(out).resolve()
    check_output_folder(out)
    num_classes = len(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f'.{out.name}.tmp-'))
    try:
        for split in SPLITS:
            image_path(tmp, split, 'x').parent.mkdir(parents=True)
            label_path(tmp, split, 'x').parent.mkdir(parents=True)
        stems = {split: [] for split in SPLITS}
        seen = set()
        for sample in tqdm(samples, total=total, desc=f'converting {name}',
                           unit='img'):
            split = split_of.get(sample.stem)
            if split is None:
                continue
            if sample.stem in seen:
                raise sample.error(f'stem {sample.stem} occurs twice')
            seen.add(sample.stem)
            label = check_sample(sample, num_classes)
            image_bytes = sample.image_bytes
            if max_size:
                image_bytes, label = downscale(image_bytes, label, max_size)
            image_path(tmp, split, sample.stem).write_bytes(
                image_bytes)
            label_path(tmp, split, sample.stem).write_bytes(
                encode_label_png(label))
            stems[split].append(sample.stem)
        missing = sorted(set(split_of) - seen)
        if missing:
            raise DatasetFormatError(
                f'{len(missing)} records named by the split were not found '
                f'in the release, e.g. {missing[:5]}')
        (tmp / 'splits').mkdir()
        for split in SPLITS:
            (tmp / 'splits' / f'{split}.txt').write_text(
                ''.join(f'{stem}\n' for stem in stems[split]))
        counts = {split: len(stems[split]) for split in SPLITS}
        (tmp / 'dataset.json').write_text(json.dumps(
            dict(name=name, classes=list(classes), splits=counts,
                 max_size=max_size),
            indent=2) + '\n')
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def image_path(root: Path, split: str, stem: str) -> Path:
    """Where a converted dataset keeps a photo."""
    return Path(root) / 'img_dir' / split / f'{stem}.jpg'


def label_path(root: Path, split: str, stem: str) -> Path:
    """Where a converted dataset keeps a label map."""
    return Path(root) / 'ann_dir' / split / f'{stem}.png'


def read_dataset_meta(root: Path) -> dict:
    """``dataset.json`` of a converted dataset."""
    path = Path(root) / 'dataset.json'
    if not path.is_file():
        raise DatasetFormatError(
            f'{path}: not found; is {root} a dataset written by '
            'tools/convert_data.py?')
    return json.loads(path.read_text())


