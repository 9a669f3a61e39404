"""Per-image confusion matrices, from which every metric is computed
(:mod:`fashionseg.evaluation.metrics`).

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
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fashionseg.errors import DataError
from fashionseg.evaluation.score_files import NPZ_READ_ERRORS, npz_error_reason
from fashionseg.utils.atomic_write import atomic_write

IGNORE_INDEX = 255
CONFUSION_SUFFIX = '.confusion.npz'


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Rows: ground truth, columns: prediction; ``ignore_index`` skipped.
    Torch tensors are counted on their device (one ``bincount``), and only
    the matrix comes back to the host."""
    if isinstance(label, torch.Tensor) or isinstance(pred, torch.Tensor):
        label = torch.as_tensor(label).reshape(-1).long()
        pred = torch.as_tensor(pred, device=label.device).reshape(-1).long()
        keep = label != ignore_index
        counts = torch.bincount(label[keep] * num_classes + pred[keep],
                                minlength=num_classes * num_classes)
        return counts.reshape(num_classes, num_classes).cpu().numpy()
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
    matrices = np.stack(matrices).astype(np.int64) if len(matrices) else \
        np.zeros((0, len(classes), len(classes)), np.int64)
    with atomic_write(path, binary=True) as f:
        np.savez_compressed(f, stems=np.array(list(stems), dtype=str),
                            matrices=matrices,
                            classes=np.array(list(classes), dtype=str))


def load_confusions(path: Path) -> dict:
    """``{'stems': [...], 'matrices': N x C x C, 'classes': [...]}``; a
    file that is none (damaged, or another kind of ``.npz``) is a
    :class:`DataError` that names it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stems = [str(s) for s in data['stems']]
            matrices = data['matrices']
            classes = [str(c) for c in data['classes']]
    except FileNotFoundError:
        raise DataError(f'{path}: not found') from None
    except NPZ_READ_ERRORS as error:
        raise DataError(f'{path}: not a confusion file written beside a '
                        f'metrics file ({npz_error_reason(error)})') from None
    problem = _confusion_problem(stems, matrices, classes)
    if problem:
        raise DataError(f'{path}: not a confusion file written beside a '
                        f'metrics file ({problem})')
    return dict(stems=stems, matrices=matrices.astype(np.int64),
                classes=classes)


def _confusion_problem(stems: Sequence[str], matrices: np.ndarray,
                       classes: Sequence[str]) -> str:
    """What makes saved matrices other than :func:`save_confusions`
    writes them (empty: nothing)."""
    count = len(classes)
    if matrices.shape != (len(stems), count, count):
        return (f'matrices of shape {matrices.shape}, not {len(stems)} '
                f'images x {count} x {count} classes')
    if matrices.dtype.kind not in 'iu':
        return f'{matrices.dtype} matrices, not pixel counts'
    if matrices.size and matrices.min() < 0:
        return 'negative pixel counts'
    return ''


def confusion_path(metrics_path: Path) -> Path:
    """Where the per-image confusion matrices of a metrics file live:
    ``test.json`` -> ``test.confusion.npz``."""
    return Path(metrics_path).with_suffix(CONFUSION_SUFFIX)
