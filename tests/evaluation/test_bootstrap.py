"""The paired bootstrap on hand-made per-image confusion matrices."""
import numpy as np
import pytest

from fashionseg.evaluation import bootstrap
from fashionseg.evaluation.metrics import (foreground_iou, mean_image_iou,
                                           mean_iou, pixel_accuracy)


def _images(rng, count=40, classes=4, pixels=400):
    """Per-image confusion matrices of a plausible segmenter: each image
    has a different class mix and 60-95 % of its pixels right."""
    out = []
    for _ in range(count):
        truth = rng.multinomial(pixels, rng.dirichlet(np.ones(classes)))
        matrix = np.zeros((classes, classes), np.int64)
        for c, n in enumerate(truth):
            right = rng.binomial(n, rng.uniform(0.6, 0.95))
            matrix[c, c] = right
            matrix[c] += rng.multinomial(n - right, np.full(classes,
                                                            1 / classes))
        out.append(matrix)
    return np.stack(out)


def _compare(a_runs, b_runs, resamples=2000):
    counts = bootstrap.resample_counts(len(a_runs[0]), resamples, seed=7)
    sides = []
    for runs in (a_runs, b_runs):
        sides.append(([bootstrap.resampled_metrics(r, counts) for r in runs],
                      [{k: float(v) for k, v in bootstrap.metrics_of(
                          r).items()} for r in runs]))
    return bootstrap.compare(sides[0][0], sides[1][0], sides[0][1],
                             sides[1][1])


def test_identical_systems_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    runs = [_images(rng), _images(rng)]  # two seeds
    result = _compare(runs, [r.copy() for r in runs])
    for name in bootstrap.METRICS:
        assert result[name]['difference'] == 0.0
        assert result[name]['low'] <= 0.0 <= result[name]['high']
        assert result[name]['verdict'] == 'inconclusive'


def test_a_constant_per_image_advantage_excludes_zero():
    rng = np.random.default_rng(1)
    worse = _images(rng)
    better = worse.copy()
    # On every image, 20 pixels of class 1 that `worse` calls class 2 are
    # right in `better`.
    moved = np.minimum(worse[:, 1, 2], 20)
    better[:, 1, 2] -= moved
    better[:, 1, 1] += moved
    assert moved.sum() > 0
    result = _compare([better], [worse])
    for name in bootstrap.METRICS:
        assert result[name]['low'] > 0, name
        assert result[name]['verdict'] == 'yes'
    # And the other way round.
    assert _compare([worse], [better])['aAcc']['verdict'] == 'no'


def test_a_resample_recomputes_each_figure_as_defined():
    rng = np.random.default_rng(2)
    images = _images(rng, count=12)
    counts = bootstrap.resample_counts(len(images), resamples=5, seed=3)
    assert (counts.sum(1) == len(images)).all()
    resampled = bootstrap.resampled_metrics(images, counts, chunk=2)
    for row, draw in enumerate(counts):
        drawn = np.repeat(np.arange(len(images)), draw)
        direct = images[drawn].sum(0)
        assert resampled['aAcc'][row] == pytest.approx(pixel_accuracy(direct))
        assert resampled['mIoU'][row] == pytest.approx(mean_iou(direct))
        assert resampled['fgIoU'][row] == pytest.approx(
            foreground_iou(direct))
        # Not the mean of per-image IoUs.
        per_image = np.mean([mean_iou(images[i]) for i in drawn])
        assert resampled['mIoU'][row] != pytest.approx(per_image, abs=1e-6)
        # The main IoU (Tangseng et al.'s) is the mean over drawn images.
        assert resampled['imgIoU'][row] == pytest.approx(
            mean_image_iou(images[drawn]))


def test_resamples_are_reproducible():
    a = bootstrap.resample_counts(30, 100, seed=0)
    b = bootstrap.resample_counts(30, 100, seed=0)
    np.testing.assert_array_equal(a, b)
    assert bootstrap.RESAMPLES == 10_000
