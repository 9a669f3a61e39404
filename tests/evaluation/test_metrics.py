"""The metric formulas (fashionseg.evaluation.metrics), each against a
direct computation, and the main IoU against a transcription of Tangseng
et al.'s evaluation code."""
import numpy as np
import pytest

from fashionseg.evaluation import bootstrap
from fashionseg.evaluation.confusion import confusion_matrix
from fashionseg.evaluation.metrics import (foreground_iou, image_iou,
                                           mean_image_iou, mean_iou,
                                           pixel_accuracy, split_summary)
from fashionseg.evaluation.metrics_file import metrics_record


def _tangseng_compute_iou(annotation, prediction, nlabel):
    """``compute_IOU`` of Tangseng et al.'s ``fashion_evaluation.py``
    (pongsate1/fashion-parsing, examples/tangseng), in Python 3: per class
    1..n-1, pixel counts of the intersection and the union of the class in
    the prediction and in the ground truth; the image's figure is the
    summed intersections over the summed unions, in percent."""
    truth = np.array(annotation, dtype=np.int32)
    labelmap = np.array(prediction, dtype=np.int32)
    intersect_count = np.zeros(nlabel)
    union_count = np.zeros(nlabel)
    for i in range(1, nlabel):
        seg_class = labelmap == i
        truth_class = truth == i
        intersect_count[i] = int(np.logical_and(seg_class, truth_class).sum())
        union_count[i] = int(np.logical_or(seg_class, truth_class).sum())
    with np.errstate(invalid='ignore', divide='ignore'):
        return 100 * intersect_count.sum() / union_count.sum()


# Three images, three classes (0 background). Rows: ground truth.
IMAGES = np.array([
    [[50, 0, 0], [10, 30, 0], [0, 0, 10]],    # fg: I 40, U 50
    [[90, 5, 0], [0, 0, 0], [0, 0, 5]],       # fg: I 5, U 10
    [[80, 0, 0], [0, 0, 0], [0, 0, 0]],       # no foreground at all
], dtype=np.int64)


def test_the_three_iou_definitions_differ_and_match_their_definitions():
    # Tangseng et al.: per image, then the mean over images that have one.
    assert image_iou(IMAGES)[:2] == pytest.approx([100 * 40 / 50,
                                                   100 * 5 / 10])
    assert np.isnan(image_iou(IMAGES)[2])
    img = mean_image_iou(IMAGES)
    assert img == pytest.approx((80.0 + 50.0) / 2)
    # Pooled: the split's summed matrix, foreground classes.
    total = IMAGES.sum(0)
    pooled = foreground_iou(total)
    assert pooled == pytest.approx(100 * (30 + 15) / (
        (40 + 35 - 30) + (15 + 15 - 15)))
    # MMSegmentation: per-class IoU of the summed matrix, averaged.
    ious = [220 / (225 + 230 - 220), 30 / (40 + 35 - 30), 15 / 15]
    assert mean_iou(total) == pytest.approx(100 * np.mean(ious))
    assert len({round(img, 6), round(pooled, 6),
                round(mean_iou(total), 6)}) == 3
    figures = split_summary(IMAGES)
    assert figures['imgIoU'] == pytest.approx(img)
    assert figures['fgIoU'] == pytest.approx(pooled)
    assert figures['aAcc'] == pytest.approx(pixel_accuracy(total))


def test_main_iou_is_tangseng_compute_iou_averaged_over_images():
    rng = np.random.default_rng(3)
    num_classes = 7
    per_image, reference = [], []
    for index in range(12):
        shape = (int(rng.integers(5, 40)), int(rng.integers(5, 40)))
        label = rng.integers(0, num_classes, shape)
        pred = np.where(rng.random(shape) < 0.6, label,
                        rng.integers(0, num_classes, shape))
        if index == 5:  # an image with background only, in both
            label[:] = 0
            pred[:] = 0
        per_image.append(confusion_matrix(label, pred, num_classes))
        reference.append(_tangseng_compute_iou(label, pred, num_classes))
    per_image = np.stack(per_image)
    np.testing.assert_allclose(image_iou(per_image), reference)
    assert np.isnan(reference[5])
    # Tangseng's AllMeanIOU is np.mean over the images; the harness leaves
    # out the image whose figure is undefined (NaN there).
    assert mean_image_iou(per_image) == pytest.approx(np.nanmean(reference))


def test_bootstrap_resample_iou_is_the_mean_of_the_drawn_images():
    counts = np.array([[2, 1, 0], [0, 0, 3], [1, 1, 1]])
    resampled = bootstrap.resampled_metrics(IMAGES, counts)
    assert resampled['imgIoU'][0] == pytest.approx((2 * 80 + 50) / 3)
    assert np.isnan(resampled['imgIoU'][1])  # only the empty image drawn
    assert resampled['imgIoU'][2] == pytest.approx((80 + 50) / 2)
    drawn = (counts[2][:, None, None] * IMAGES).sum(0)
    assert resampled['fgIoU'][2] == pytest.approx(foreground_iou(drawn))


def test_metrics_file_carries_the_per_image_iou():
    classes = ('background', 'a', 'b')
    flat = {'aAcc': 1.0, 'mIoU': 2.0, 'mAcc': 3.0}
    flat.update({f'{k}.{c}': 0.0 for c in classes for k in ('IoU', 'Acc')})
    record = metrics_record(flat, classes, list(IMAGES))
    assert record['imgIoU'] == round((80.0 + 50.0) / 2, 2)
    assert record['fgIoU'] == round(foreground_iou(IMAGES.sum(0)), 2)
    assert 'imgIoU' not in metrics_record(flat, classes)
