"""The metrics JSON that ``tools/test.py`` and ``tools/crf.py apply`` write,
in percent (paper section 5): pixel accuracy, mean IoU, mean accuracy and
per-class IoU and accuracy, MMSegmentation's definitions; and, from the
per-image confusion matrices, Tangseng et al.'s per-image mean IoU
(``imgIoU``, the tables' main IoU) and its pooled form (``fgIoU``)."""
from typing import Dict, Optional, Sequence

import numpy as np

from fashionseg.evaluation.metrics import (class_accuracy, class_iou,
                                           foreground_iou, mean_image_iou,
                                           mean_iou, pixel_accuracy)


def _percent(value):
    """A metric in percent with two decimals, as MMSegmentation rounds it;
    NaN (a class in neither prediction nor ground truth) as null."""
    value = float(value)
    return None if value != value else round(value, 2)


def metrics_record(metrics: dict, classes,
                   per_image: Optional[Sequence[np.ndarray]] = None) -> dict:
    """``ClassIoUMetric``'s flat metrics as the harness's metrics JSON, with
    ``imgIoU`` and ``fgIoU`` where the per-image matrices are given."""
    tangseng = {}
    if per_image is not None and len(per_image):
        per_image = np.stack(per_image)
        tangseng = {'imgIoU': _percent(mean_image_iou(per_image)),
                    'fgIoU': _percent(foreground_iou(per_image.sum(0)))}
    return {
        'aAcc': _percent(metrics['aAcc']),
        **tangseng,
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
    iou, acc = class_iou(confusion), class_accuracy(confusion)
    results = {
        'aAcc': round(pixel_accuracy(confusion), 2),
        'mIoU': round(mean_iou(confusion), 2),
        'mAcc': float(np.round(np.nanmean(acc) * 100, 2)),
    }
    for name, iou_value, acc_value in zip(classes, iou, acc):
        results[f'IoU.{name}'] = float(np.round(iou_value * 100, 2))
        results[f'Acc.{name}'] = float(np.round(acc_value * 100, 2))
    return results
