"""The converted dataset folder, as ``tools/convert_data.py`` writes it and
the CRF, benchmark and report tools read it.

``ROOT/img_dir/{train,val,test}/STEM.jpg`` (photos), ``ROOT/ann_dir/
{train,val,test}/STEM.png`` (8-bit label indices, the photo's size),
``ROOT/splits/{train,val,test}.txt`` (one stem a line, in file order) and
``ROOT/dataset.json`` (the dataset's name, classes and split sizes).
"""
import json
from pathlib import Path
from typing import List

from fashionseg.errors import DataError

SPLITS = ('train', 'val', 'test')
META_FILE = 'dataset.json'


class DatasetFolderError(DataError):
    """A folder that is not a converted dataset."""


def image_path(root: Path, split: str, stem: str) -> Path:
    """Where a converted dataset keeps a photo."""
    return Path(root) / 'img_dir' / split / f'{stem}.jpg'


def label_path(root: Path, split: str, stem: str) -> Path:
    """Where a converted dataset keeps a label map."""
    return Path(root) / 'ann_dir' / split / f'{stem}.png'


def split_stems(root: Path, split: str) -> List[str]:
    """The stems of a converted split, in file order."""
    return (Path(root) / 'splits' / f'{split}.txt').read_text().split()


def read_dataset_meta(root: Path) -> dict:
    """``dataset.json`` of a converted dataset."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise DatasetFolderError(
            f'{path}: not found; is {root} a dataset written by '
            'tools/convert_data.py?')
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetFolderError(f'{path}: unreadable ({error}); convert '
                                 'the dataset again') from None
    if not isinstance(meta, dict) or not isinstance(meta.get('classes'),
                                                    list):
        raise DatasetFolderError(f'{path}: no list of classes; is {root} a '
                                 'dataset written by tools/convert_data.py?')
    return meta
