"""Test metrics: MMSegmentation's ``IoUMetric`` with per-class figures kept
in the returned metrics (the paper reports pixel accuracy and mean IoU,
section 5; the per-class IoU feeds the report's per-class table) and the
per-image confusion matrices kept for the report
(:mod:`fashionseg.evaluation.confusion`)."""
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from fashionseg.evaluation.confusion import confusion_matrix


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """``IoUMetric`` whose result also holds ``IoU.<class>`` and
    ``Acc.<class>`` (percent, NaN where a class has no pixels in either the
    prediction or the ground truth), which ``IoUMetric`` only prints.

    After evaluation, ``per_image`` holds ``(stem, confusion matrix)`` for
    every image, in dataset order (collected from all ranks, like the
    areas ``IoUMetric`` sums).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_image = []

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        start = len(self.results)
        super().process(data_batch, data_samples)
        if self.format_only:
            return
        num_classes = len(self.dataset_meta['classes'])
        for offset, data_sample in enumerate(data_samples):
            pred = data_sample['pred_sem_seg']['data'].squeeze().cpu().numpy()
            label = data_sample['gt_sem_seg']['data'].squeeze().cpu().numpy()
            confusion = confusion_matrix(label, pred, num_classes,
                                         self.ignore_index)
            self.results[start + offset] = tuple(
                self.results[start + offset]) + (
                    Path(data_sample['img_path']).stem, confusion)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        self.per_image = [(r[4], r[5]) for r in results]
        results = [tuple(r[:4]) for r in results]
        metrics = super().compute_metrics(results)
        intersect, union, pred, label = (sum(r) for r in zip(*results))
        per_class = self.total_area_to_metrics(
            intersect, union, pred, label, ['mIoU'], nan_to_num=None)
        for name, iou, acc in zip(self.dataset_meta['classes'],
                                  per_class['IoU'], per_class['Acc']):
            metrics[f'IoU.{name}'] = float(np.round(float(iou) * 100, 2))
            metrics[f'Acc.{name}'] = float(np.round(float(acc) * 100, 2))
        return metrics
