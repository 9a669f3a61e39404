"""The metrics JSON that ``tools/test.py`` and ``tools/crf.py apply`` write:
pixel accuracy, mean IoU, mean accuracy and per-class IoU and accuracy, in
percent, MMSegmentation's definitions (paper section 5)."""
from typing import Dict, Sequence

import numpy as np


def _percent(value):
    """A metric in percent with two decimals, as MMSegmentation rounds it;
    NaN (a class in neither prediction nor ground truth) as null."""
    value = float(value)
    return None if value != value else round(value, 2)


def metrics_record(metrics: dict, classes) -> dict:
    """``ClassIoUMetric``'s flat metrics as the harness's metrics JSON."""
    return {
        'aAcc': _percent(metrics['aAcc']),
        'mIoU': _percent(metrics['mIoU']),
        'mAcc': _percent(metrics['mAcc']),
        'per_class': {
            name: {'IoU': _percent(metrics[f'IoU.{name}']),
                   'Acc': _percent(metrics[f'Acc.{name}'])}
            for name in classes},
    }


def iou_metric_results(confusion: np.ndarray,
                       classes: Sequence[str]) -> Dict[str, float]:
    """What ``ClassIoUMetric`` returns, computed from a summed confusion
    matrix (rows: ground truth) without MMSegmentation: ``aAcc``, ``mIoU``,
    ``mAcc`` (means over the classes with a defined value) and
    ``IoU.<class>`` / ``Acc.<class>`` (NaN where undefined), in percent
    rounded to two decimals."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersect = np.diag(confusion)
    label = confusion.sum(1)
    union = confusion.sum(0) + label - intersect
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = intersect / union
        acc = intersect / label
    results = {
        'aAcc': float(np.round(intersect.sum() / label.sum() * 100, 2)),
        'mIoU': float(np.round(np.nanmean(iou) * 100, 2)),
        'mAcc': float(np.round(np.nanmean(acc) * 100, 2)),
    }
    for name, class_iou, class_acc in zip(classes, iou, acc):
        results[f'IoU.{name}'] = float(np.round(class_iou * 100, 2))
        results[f'Acc.{name}'] = float(np.round(class_acc * 100, 2))
    return results
