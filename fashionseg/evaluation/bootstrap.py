"""Paired bootstrap confidence intervals for the differences the paper
claims (a "clear margin", section 5), over the test images and pooled over
training seeds.

Each resample draws the test images with replacement (the same draw for
every system, which makes the comparison paired); a system's figure on a
resample is recomputed from its per-image confusion matrices: the pooled
figures (pixel accuracy, ``fgIoU``, ``mIoU``) from the matrices summed over
the drawn images, Tangseng et al.'s ``imgIoU`` as the mean of the drawn
images' per-image IoU (each counted as often as it is drawn; images without
a figure left out), as :mod:`fashionseg.evaluation.metrics` defines them;
then averaged over its seeds. The 95 % interval of the difference is the 2.5th
to 97.5th percentile over 10,000 resamples.
"""
from typing import Dict, Sequence

import numpy as np

from fashionseg.evaluation.metrics import image_iou, split_summary, summary

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
METRICS = ('aAcc', 'imgIoU', 'fgIoU', 'mIoU')


def resample_counts(num_images: int, resamples: int = RESAMPLES,
                    seed: int = SEED) -> np.ndarray:
    """How often each image is drawn in each resample (resamples x N):
    ``num_images`` draws with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1 / num_images),
                           size=resamples)


def metrics_of(per_image: np.ndarray) -> Dict[str, float]:
    """Every figure (percent) of a whole split from its per-image matrices
    (N x C x C)."""
    return split_summary(per_image)


def resampled_metrics(per_image: np.ndarray, counts: np.ndarray,
                      chunk: int = 500) -> Dict[str, np.ndarray]:
    """A run's figures on every resample (one value per resample)."""
    per_image = np.asarray(per_image, dtype=np.float64)
    num_images, num_classes = per_image.shape[0], per_image.shape[1]
    flat = per_image.reshape(num_images, -1)
    image = image_iou(per_image)
    defined = ~np.isnan(image)
    out = {name: np.empty(len(counts)) for name in METRICS}
    for start in range(0, len(counts), chunk):
        drawn = counts[start:start + chunk]
        sums = drawn @ flat
        with np.errstate(invalid='ignore', divide='ignore'):
            values = summary(sums.reshape(-1, num_classes, num_classes))
            values['imgIoU'] = (drawn @ np.where(defined, image, 0.0)) / (
                drawn @ defined)
        for name in METRICS:
            out[name][start:start + chunk] = values[name]
    return out


def compare(a: Sequence[Dict[str, np.ndarray]],
            b: Sequence[Dict[str, np.ndarray]],
            a_full: Sequence[Dict[str, float]],
            b_full: Sequence[Dict[str, float]],
            level: float = LEVEL) -> Dict[str, dict]:
    """Difference a - b of each figure, each system averaged over its
    seeds: the point estimate on the whole test set and the percentile
    interval over the resamples."""
    tail = 100 * (1 - level) / 2
    result = {}
    for name in METRICS:
        point = np.mean([m[name] for m in a_full]) - \
            np.mean([m[name] for m in b_full])
        spread = np.mean([m[name] for m in a], 0) - \
            np.mean([m[name] for m in b], 0)
        low, high = np.nanpercentile(spread, [tail, 100 - tail])
        result[name] = dict(difference=float(point), low=float(low),
                            high=float(high), verdict=verdict(low, high))
    return result


def verdict(low: float, high: float) -> str:
    """``yes`` when the whole interval favours the claim (a > b), ``no``
    when it favours the other side, ``inconclusive`` when it holds 0."""
    if low > 0:
        return 'yes'
    if high < 0:
        return 'no'
    return 'inconclusive'
