"""Test metrics: MMSegmentation's ``IoUMetric`` with per-class figures kept
in the returned metrics (the paper reports pixel accuracy and mean IoU,
section 5; the per-class IoU feeds the report's per-class table)."""
from typing import Dict

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """``IoUMetric`` whose result also holds ``IoU.<class>`` and
    ``Acc.<class>`` (percent, NaN where a class has no pixels in either the
    prediction or the ground truth), which ``IoUMetric`` only prints."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        intersect, union, pred, label = (sum(r) for r in zip(*results))
        per_class = self.total_area_to_metrics(
            intersect, union, pred, label, ['mIoU'], nan_to_num=None)
        for name, iou, acc in zip(self.dataset_meta['classes'],
                                  per_class['IoU'], per_class['Acc']):
            metrics[f'IoU.{name}'] = float(np.round(float(iou) * 100, 2))
            metrics[f'Acc.{name}'] = float(np.round(float(acc) * 100, 2))
        return metrics
