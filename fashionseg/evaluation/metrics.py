"""The one implementation of each metric (paper section 5), computed from
confusion matrices (rows: ground truth, columns: prediction; see
:mod:`fashionseg.evaluation.confusion`). Every function takes one C x C
matrix or a stack of them (... x C x C, e.g. one per bootstrap resample)
and works on the last two axes.

- pixel accuracy: correct pixels over labelled pixels;
- ``mIoU`` (MMSegmentation's ``IoUMetric``): per-class IoU, averaged over
  the classes present in the ground truth or the prediction;
- ``imgIoU`` (the evaluation code of Tangseng et al. 2017, whose figures
  the paper cites: ``compute_IOU`` in ``fashion_evaluation.py``, averaged
  over the test images as its ``AllMeanIOU``): per image, the foreground
  classes' (all but class 0) summed intersections over their summed unions;
  then the mean over the images. An image with no foreground in either
  its ground truth or its prediction has no figure (Tangseng's code gives
  NaN) and is left out of the mean;
- ``fgIoU``: the same ratio pooled over the split (the split's summed
  confusion matrix), for comparison;
- the background-only baseline: class 0 predicted everywhere.

Percentages are returned as floats for one matrix, arrays for a stack.
"""
import numpy as np


def _as_value(value):
    return float(value) if np.ndim(value) == 0 else value


def _areas(confusion):
    """The matrix as float64, each class's intersection and union."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersect = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(-2) + confusion.sum(-1) - intersect
    return confusion, intersect, union


def class_iou(confusion) -> np.ndarray:
    """Per-class IoU (fraction); NaN for a class in neither the ground
    truth nor the prediction."""
    _, intersect, union = _areas(confusion)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, intersect / union, np.nan)


def class_accuracy(confusion) -> np.ndarray:
    """Per-class accuracy (fraction of the class's labelled pixels
    predicted as it); NaN for a class absent from the ground truth."""
    confusion, intersect, _ = _areas(confusion)
    labelled = confusion.sum(-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(labelled > 0, intersect / labelled, np.nan)


def pixel_accuracy(confusion):
    """Correct over labelled pixels, in percent."""
    confusion, intersect, _ = _areas(confusion)
    return _as_value(100.0 * intersect.sum(-1) / confusion.sum((-2, -1)))


def mean_iou(confusion):
    """MMSegmentation's mIoU in percent: the mean of the per-class IoU over
    the classes present in the ground truth or the prediction."""
    return _as_value(100.0 * np.nanmean(class_iou(confusion), -1))


def foreground_iou(confusion):
    """Tangseng et al.'s mean IoU in percent: over the foreground classes
    (all but class 0), summed intersections over summed unions."""
    _, intersect, union = _areas(confusion)
    return _as_value(100.0 * intersect[..., 1:].sum(-1) /
                     union[..., 1:].sum(-1))


def image_iou(confusions):
    """Per image (the last two axes are one image's matrix): Tangseng et
    al.'s foreground IoU in percent, NaN where the image has no foreground
    in its ground truth or its prediction."""
    _, intersect, union = _areas(confusions)
    intersect, union = intersect[..., 1:].sum(-1), union[..., 1:].sum(-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, 100.0 * intersect / union, np.nan)


def mean_image_iou(confusions) -> float:
    """Tangseng et al.'s mean IoU of a split (N x C x C per-image matrices):
    the mean of :func:`image_iou` over the images that have a figure (NaN
    if none has)."""
    values = image_iou(confusions)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float('nan')


def background_accuracy(confusion):
    """Pixel accuracy, in percent, of predicting class 0 everywhere (the
    paper's background-only baseline)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    return _as_value(100.0 * confusion[..., 0, :].sum(-1) /
                     confusion.sum((-2, -1)))


def summary(confusion) -> dict:
    """Pixel accuracy and the pooled mean-IoU definitions, in percent, of a
    (summed) confusion matrix."""
    return dict(aAcc=pixel_accuracy(confusion), mIoU=mean_iou(confusion),
                fgIoU=foreground_iou(confusion))


def split_summary(per_image) -> dict:
    """Every figure of a split from its per-image matrices (N x C x C):
    :func:`summary` of their sum, and ``imgIoU``."""
    per_image = np.asarray(per_image)
    return dict(summary(per_image.sum(0)),
                imgIoU=mean_image_iou(per_image))
