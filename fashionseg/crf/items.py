"""The images of a split paired with their score files and ground truth,
read and checked against each other: the inputs of every CRF run
(:mod:`fashionseg.crf.refine`, :mod:`fashionseg.crf.device_batches`, the
search and the figures)."""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2

from fashionseg.crf.energy import upsampled_log_probs
from fashionseg.dataset_folder import image_path, label_path, read_dataset_meta
from fashionseg.errors import DataError
from fashionseg.evaluation.confusion import CONFUSION_SUFFIX, IGNORE_INDEX
from fashionseg.evaluation.score_files import load_scores

# Label maps are 8-bit PNGs and 255 marks ignored pixels.
MAX_CLASSES = IGNORE_INDEX


class CRFInputError(DataError):
    """Scores, images and labels that do not belong together."""


@dataclass(frozen=True)
class CRFItem:
    """One image of a split with its score file and ground truth."""
    stem: str
    scores: Path
    image: Path
    label: Path


def split_items(scores_dir: Path, data_root: Path, split: str,
                max_images: Optional[int] = None
                ) -> Tuple[List[CRFItem], tuple]:
    """The split's images (the first ``max_images`` of them, when given)
    paired with their score files, and the dataset's class names. Every
    image used must have scores and every score file an image of the
    split: nothing is silently skipped."""
    scores_dir, data_root = Path(scores_dir), Path(data_root)
    if not scores_dir.is_dir():
        raise CRFInputError(f'--scores {scores_dir}: no such folder (the '
                            'class scores tools/test.py --out writes)')
    classes = tuple(read_dataset_meta(data_root)['classes'])
    if len(classes) > MAX_CLASSES:
        raise CRFInputError(
            f'{data_root}: {len(classes)} classes; the CRF writes label maps '
            f'as 8-bit PNGs with {IGNORE_INDEX} for ignored pixels, so at '
            'most '
            f'{MAX_CLASSES} classes')
    split_file = data_root / 'splits' / f'{split}.txt'
    if not split_file.is_file():
        raise CRFInputError(f'{split_file}: split not found')
    stems = split_file.read_text().split()
    items = []
    for stem in stems[:max_images]:
        item = CRFItem(stem, scores_dir / f'{stem}.npz',
                       image_path(data_root, split, stem),
                       label_path(data_root, split, stem))
        if not item.scores.is_file():
            raise CRFInputError(
                f'{item.scores}: no scores for image {item.image} of the '
                f'{split} split (run tools/test.py --out on that split)')
        items.append(item)
    known = set(stems)
    for path in sorted(scores_dir.glob('*.npz')):
        # tools/test.py --out also writes its per-image confusion matrices
        # (metrics.confusion.npz) there.
        if path.name.endswith(CONFUSION_SUFFIX):
            continue
        if path.stem not in known:
            raise CRFInputError(
                f'{path}: score file without its image: {split_file} has no '
                f'image {path.stem}')
    return items, classes


def read_item(item: CRFItem, num_classes: int):
    """(RGB image, ground truth, score record) from disk, checked against
    each other."""
    record = load_scores(item.scores)
    scores = record['scores']
    if scores.shape[0] != num_classes:  # (3-D: load_scores)
        raise CRFInputError(
            f'{item.scores}: scores have {scores.shape[0]} classes but the '
            f'dataset has {num_classes} (shape {scores.shape})')
    image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
    if image is None:
        raise CRFInputError(f'{item.image}: image missing or unreadable')
    label = cv2.imread(str(item.label), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise CRFInputError(f'{item.label}: label map missing or unreadable')
    size = (record['height'], record['width'])
    if image.shape[:2] != size or label.shape != size:
        raise CRFInputError(
            f'{item.scores}: scores are for a {size[0]} x {size[1]} image, '
            f'but {item.image.name} is {image.shape[0]} x {image.shape[1]} '
            f'and its label map {label.shape[0]} x {label.shape[1]}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label, record


def load_item(item: CRFItem, num_classes: int):
    """(image, ground truth, log probabilities at image size), checked."""
    image, label, record = read_item(item, num_classes)
    log_probs = upsampled_log_probs(record['scores'], record['height'],
                                    record['width'], record['input_height'],
                                    record['input_width'])
    return image, label, log_probs
