"""Per-image confusion matrices and the metrics computed from them.

``tools/test.py`` and ``tools/crf.py apply`` save one ``classes x classes``
integer matrix per test image (rows: ground truth, columns: prediction;
pixels labelled 255 are ignored, as in MMSegmentation). Every figure of the
report is recomputed from them, so that its two mean-IoU definitions, the
per-class table and the confusion figure all come from the same counts:

- pixel accuracy: correct pixels over labelled pixels (paper section 5);
- ``mIoU`` (MMSegmentation's ``IoUMetric``): per-class IoU on the whole
  split, averaged over the classes present in the ground truth or the
  prediction;
- ``fgIoU`` (the evaluation code of Tangseng et al. 2017, whose figures the
  paper cites): foreground classes only, the summed intersections over the
  summed unions.
"""
import os
from pathlib import Path
from typing import Sequence

import numpy as np

IGNORE_INDEX = 255
CONFUSION_SUFFIX = '.confusion.npz'


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Rows: ground truth, columns: prediction; ``ignore_index`` skipped."""
    label = np.asarray(label, dtype=np.int64).ravel()
    pred = np.asarray(pred, dtype=np.int64).ravel()
    keep = label != ignore_index
    counts = np.bincount(label[keep] * num_classes + pred[keep],
                         minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def save_confusions(path: Path, stems: Sequence[str],
                    matrices: Sequence[np.ndarray],
                    classes: Sequence[str]) -> None:
    """One ``.npz``: ``stems`` (N), ``matrices`` (N x C x C, int64),
    ``classes`` (C); written through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matrices = np.stack(matrices).astype(np.int64) if len(matrices) else \
        np.zeros((0, len(classes), len(classes)), np.int64)
    tmp = path.with_name(f'.{path.name}.tmp')
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, stems=np.array(list(stems), dtype=str),
                            matrices=matrices,
                            classes=np.array(list(classes), dtype=str))
    os.replace(tmp, path)


def load_confusions(path: Path) -> dict:
    """``{'stems': [...], 'matrices': N x C x C, 'classes': [...]}``."""
    with np.load(path, allow_pickle=False) as data:
        return dict(stems=[str(s) for s in data['stems']],
                    matrices=data['matrices'].astype(np.int64),
                    classes=[str(c) for c in data['classes']])


def confusion_path(metrics_path: Path) -> Path:
    """Where the per-image confusion matrices of a metrics file live:
    ``test.json`` -> ``test.confusion.npz``."""
    return Path(metrics_path).with_suffix(CONFUSION_SUFFIX)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU (fraction); NaN for a class in neither the ground
    truth nor the prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersect = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersect
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, intersect / union, np.nan)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Correct over labelled pixels, in percent."""
    confusion = np.asarray(confusion, dtype=np.float64)
    return float(100.0 * np.trace(confusion) / confusion.sum())


def mean_iou(confusion: np.ndarray) -> float:
    """MMSegmentation's mIoU in percent: the mean of the per-class IoU over
    the classes present in the ground truth or the prediction."""
    return float(100.0 * np.nanmean(class_iou(confusion)))


def foreground_iou(confusion: np.ndarray) -> float:
    """Tangseng et al.'s mean IoU in percent: over the foreground classes
    (all but class 0), summed intersections over summed unions."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersect = np.diag(confusion)[1:]
    union = (confusion.sum(0) + confusion.sum(1))[1:] - intersect
    return float(100.0 * intersect.sum() / union.sum())


def background_accuracy(confusion: np.ndarray) -> float:
    """Pixel accuracy, in percent, of predicting class 0 everywhere (the
    paper's background-only baseline)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    return float(100.0 * confusion[0].sum() / confusion.sum())


def summary(confusion: np.ndarray) -> dict:
    """Pixel accuracy and both mean-IoU definitions, in percent."""
    return dict(aAcc=pixel_accuracy(confusion), mIoU=mean_iou(confusion),
                fgIoU=foreground_iou(confusion))
