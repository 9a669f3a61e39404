"""Refining a split's predictions with the dense CRF, over all cores.

Pairs every image of a converted dataset's split with the score file that
``tools/test.py --out`` wrote for it, checks that they agree, and runs
:func:`fashionseg.crf.pydensecrf_backend.dense_crf` in a process pool (or
the PyTorch backend in batches). Each image is refined on its own and the
per-image results are combined in split order, so the result is the same
whatever the number of processes. (The torch backend's batched runner is
:mod:`fashionseg.crf.device_batches`.)
"""
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from custom_datasets.layout import image_path, label_path, read_dataset_meta
from fashionseg.crf.energy import CRFParams, upsampled_log_probs
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.evaluation.confusion import (CONFUSION_SUFFIX, IGNORE_INDEX,
                                             confusion_matrix)
from fashionseg.evaluation.metrics import pixel_accuracy
from fashionseg.evaluation.score_files import load_scores

# Label maps are 8-bit PNGs and 255 marks ignored pixels.
MAX_CLASSES = IGNORE_INDEX


class CRFInputError(ValueError):
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
    if scores.ndim != 3 or scores.shape[0] != num_classes:
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
    if record['input_height'] < size[0] or record['input_width'] < size[1]:
        raise CRFInputError(
            f'{item.scores}: score map {scores.shape[1:]} does not cover the '
            f'{size[0]} x {size[1]} image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label, record


def load_item(item: CRFItem, num_classes: int):
    """(image, ground truth, log probabilities at image size), checked."""
    image, label, record = read_item(item, num_classes)
    log_probs = upsampled_log_probs(record['scores'], record['height'],
                                    record['width'], record['input_height'],
                                    record['input_width'])
    return image, label, log_probs


def _image_stats(pred: np.ndarray, label: np.ndarray, num_classes: int,
                 stem: str):
    """Per image: the stem and the confusion matrix (pixels labelled 255
    ignored, as MMSegmentation's ``IoUMetric`` counts them)."""
    return stem, confusion_matrix(label, pred, num_classes, IGNORE_INDEX)


def refine_item(task):
    """Worker: refine one image with one parameter set (None: no CRF)."""
    item, params, num_classes, keep_labels = task
    image, label, log_probs = load_item(item, num_classes)
    if params is None:
        pred = log_probs.argmax(0).astype(np.uint8)
    else:
        pred = dense_crf(image, log_probs, params)
    return _image_stats(pred, label, num_classes, item.stem), (
        pred if keep_labels else None)


def _init_worker():
    # One thread per process: the pool provides the parallelism.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


@dataclass(frozen=True)
class CRFBackend:
    """Where the CRF runs: ``pydensecrf`` in a pool of ``workers``
    processes (all cores by default), or ``torch``
    (:mod:`fashionseg.crf.torch_backend`) on ``device``, ``batch_size``
    images per
    call. Both give the same labels (to floating-point summation order)."""
    name: str = 'pydensecrf'
    workers: Optional[int] = None
    device: str = 'cpu'
    batch_size: int = 1
    # At most this many pixels per torch-backend call (the lattice's
    # vertices and memory grow with them), whatever batch_size allows.
    max_pixels: int = 16 * 600 * 400

    @classmethod
    def choose(cls, name: str = 'auto', device: Optional[str] = None,
               workers: Optional[int] = None,
               batch_size: Optional[int] = None):
        """``auto``: the torch backend on the GPU when there is one, else
        pydensecrf on all cores."""
        if name not in ('auto', 'pydensecrf', 'torch'):
            raise CRFInputError(f'unknown CRF backend {name!r}')
        if device not in (None, 'cpu', 'cuda'):
            raise CRFInputError(f'unknown device {device!r}')
        if device == 'cuda' and not torch.cuda.is_available():
            raise CRFInputError('--device cuda, but torch sees no CUDA GPU')
        if name == 'auto':
            name = 'torch' if (device == 'cuda' or (
                device is None and torch.cuda.is_available())) \
                else 'pydensecrf'
        if device is None:
            device = 'cuda' if name == 'torch' and \
                torch.cuda.is_available() else 'cpu'
        if batch_size is None:
            # Batches pay on a GPU; on the CPU one image at a time is
            # fastest (tools/benchmark_crf.py speed).
            batch_size = 16 if device == 'cuda' else 1
        return cls(name, workers, device, batch_size)

    def describe(self) -> dict:
        """What a result records: the backend, and the torch backend's
        device (not the process or batch count, which do not change the
        labels)."""
        if self.name == 'pydensecrf':
            return dict(backend=self.name)
        return dict(backend=self.name, device=self.device)


def run_tasks(tasks: Sequence, workers: Optional[int] = None,
              desc: str = 'dense CRF',
              backend: Optional[CRFBackend] = None) -> Iterable:
    """``refine_item`` over ``tasks`` in order: with pydensecrf in a pool
    of ``workers`` processes (all cores by default; 1 runs in this
    process), with the torch backend in batches on its device."""
    backend = backend or CRFBackend(workers=workers)
    if backend.name == 'torch':
        # Imported here: the batched runner builds on this module's items.
        from fashionseg.crf.device_batches import run_batched
        yield from run_batched(tasks, backend, desc)
        return
    workers = backend.workers or workers or os.cpu_count() or 1
    progress = dict(total=len(tasks), desc=desc, unit='img')
    if workers == 1:
        _init_worker()
        yield from tqdm(map(refine_item, tasks), **progress)
        return
    with multiprocessing.get_context('fork').Pool(
            workers, initializer=_init_worker) as pool:
        yield from tqdm(pool.imap(refine_item, tasks), **progress)


def split_accuracy(stats: Sequence) -> float:
    """Pixel accuracy in percent over the images' statistics."""
    return pixel_accuracy(sum(confusion for _, confusion in stats))


def refine_split(items: Sequence[CRFItem], classes: tuple,
                 params: Optional[CRFParams], workers: Optional[int] = None,
                 keep_labels: bool = False,
                 backend: Optional[CRFBackend] = None):
    """Refine every item; returns each image's (stem, confusion matrix)
    (and label
    maps with ``keep_labels``), in split order."""
    tasks = [(item, params, len(classes), keep_labels) for item in items]
    results = list(run_tasks(tasks, workers, backend=backend))
    return [r[0] for r in results], [r[1] for r in results]
