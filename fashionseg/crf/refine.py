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
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.device_batches import run_batched
from fashionseg.crf.energy import CRFParams
from fashionseg.crf.items import CRFItem, load_item
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.evaluation.confusion import IGNORE_INDEX, confusion_matrix
from fashionseg.evaluation.metrics import pixel_accuracy


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


def run_tasks(tasks: Sequence, workers: Optional[int] = None,
              desc: str = 'dense CRF',
              backend: Optional[CRFBackend] = None) -> Iterable:
    """``refine_item`` over ``tasks`` in order: with pydensecrf in a pool
    of ``workers`` processes (all cores by default; 1 runs in this
    process), with the torch backend in batches on its device."""
    backend = backend or CRFBackend(workers=workers)
    if backend.name == 'torch':
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
