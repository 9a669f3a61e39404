"""Writing a converted dataset in MMSegmentation's folder layout
(:mod:`fashionseg.dataset_folder`): the release's JPEG bytes unchanged (or
scaled down with ``--max-size``), the label maps as 8-bit PNGs, the split
lists and ``dataset.json``. The dataset is built in a temporary folder
beside OUT and renamed into place only when every record has passed its
checks (:mod:`custom_datasets.records`), so a failed or interrupted
conversion leaves nothing in OUT.
"""
import io
import json
import shutil
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionseg.dataset_folder import SPLITS, image_path, label_path
from fashionseg.errors import UsageError
from fashionseg.utils.atomic_write import (building_folder_beside,
                                           remove_abandoned_folders,
                                           replace_folder)
from fashionseg.utils.output_folder import (OutputFolderError,
                                            refuse_under_a_file)

from .records import DatasetFormatError, Sample, check_sample


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
        if src in out.parents:
            raise OutputFolderError(
                f'--out {out} lies within --src {src}: converting would '
                'write into the raw release; choose an --out outside it')
    refuse_under_a_file(out, itself=False)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputFolderError(f'--out {out} exists and is not a folder')
    entries = sorted(out.iterdir())
    if not entries:
        return
    why = _not_a_converted_dataset(out, entries)
    if why is None:
        return
    raise OutputFolderError(
        f'--out {out} exists and is not a dataset written by '
        f'tools/convert_data.py ({why}); it is left as it is. Choose another'
        ' --out, or move that folder away yourself')


# What a converted dataset folder holds, and nothing else: the whole folder
# is replaced by a new conversion. (.DS_Store: what macOS's Finder leaves
# in a folder it shows.)
DATASET_ENTRIES = ('ann_dir', 'dataset.json', 'img_dir', 'splits',
                   '.DS_Store')


def _not_a_converted_dataset(out: Path, entries) -> Optional[str]:
    """Why ``out`` is not a folder this converter wrote, or None: its
    ``dataset.json`` must be the converter's and it must hold nothing
    else than :data:`DATASET_ENTRIES`, since replacing it removes all."""
    others = [p.name for p in entries if p.name not in DATASET_ENTRIES]
    if others:
        return _listed('it holds', others)
    try:
        meta = json.loads((out / 'dataset.json').read_text())
    except FileNotFoundError:
        return 'it has no dataset.json'
    except (OSError, ValueError):
        return 'its dataset.json is not the converter\'s'
    if not (isinstance(meta, dict) and {'name', 'classes', 'splits'} <= set(
            meta)):
        return 'its dataset.json is not the converter\'s'
    # Inside: the split lists, and the photos and label maps they name.
    written = {out / 'splits' / f'{split}.txt' for split in SPLITS}
    folders = {out / name for name in ('img_dir', 'ann_dir', 'splits')}
    for split in SPLITS:
        folders |= {image_path(out, split, 'x').parent,
                    label_path(out, split, 'x').parent}
        listed = out / 'splits' / f'{split}.txt'
        stems = listed.read_text().split() if listed.is_file() else []
        written |= {image_path(out, split, stem) for stem in stems}
        written |= {label_path(out, split, stem) for stem in stems}
    inside = [path for name in ('img_dir', 'ann_dir', 'splits')
              for path in sorted((out / name).rglob('*'))
              if path.name not in DATASET_ENTRIES and not (
                  path in folders if path.is_dir() and not
                  path.is_symlink() else path in written)]
    if inside:
        return _listed('it holds files it did not write:',
                       [str(p.relative_to(out)) for p in inside])
    return None


def _listed(what: str, names) -> str:
    more = f' and {len(names) - 3} more' if len(names) > 3 else ''
    return f'{what} {", ".join(names[:3])}{more}'


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


# The models downsample by 32: a smaller image has no pixel at their
# coarsest level.
MIN_MAX_SIZE = 32


def check_max_size(max_size: Optional[int]) -> None:
    """``--max-size``: None or 0 (keep the size), else at least
    :data:`MIN_MAX_SIZE`."""
    if max_size and max_size < MIN_MAX_SIZE:  # negative ones too
        raise UsageError(f'--max-size must be 0 (keep the size) or at least '
                         f'{MIN_MAX_SIZE} pixels, not {max_size}')


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
    check_max_size(max_size)
    out = Path(out).resolve()
    check_output_folder(out)
    num_classes = len(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in remove_abandoned_folders(out):
        print(f'removed {path}, left by an interrupted conversion')
    with building_folder_beside(out) as tmp:
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
                    image_bytes, label = downscale(image_bytes, label,
                                                   max_size)
                image_path(tmp, split, sample.stem).write_bytes(
                    image_bytes)
                label_path(tmp, split, sample.stem).write_bytes(
                    encode_label_png(label))
                stems[split].append(sample.stem)
            missing = sorted(set(split_of) - seen)
            if missing:
                raise DatasetFormatError(
                    f'{len(missing)} records named by the split were not '
                    f'found in the release, e.g. {missing[:5]}')
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
