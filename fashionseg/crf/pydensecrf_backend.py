"""The dense CRF with ``pydensecrf`` (the ``pydensecrf2`` package), the
reference implementation of :mod:`fashionseg.crf.energy`."""
import numpy as np
import pydensecrf.densecrf as dcrf

from fashionseg.crf.energy import (MEAN_FIELD_ITERATIONS, SMOOTHNESS_COMPAT,
                                   SMOOTHNESS_SXY, CRFParams)


def dense_crf(image: np.ndarray, log_probs: np.ndarray, params: CRFParams,
              iterations: int = MEAN_FIELD_ITERATIONS) -> np.ndarray:
    """Refine a labelling with the fully connected CRF.

    Args:
        image: H x W x 3 uint8 (colour order does not matter: the kernel
            uses Euclidean colour distances).
        log_probs: classes x H x W log probabilities.

    Returns:
        H x W labels (uint8).
    """
    num_classes, height, width = log_probs.shape
    if image.shape[:2] != (height, width):
        raise ValueError(f'image is {image.shape[:2]} but the scores are '
                         f'{(height, width)}')
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    unary = np.ascontiguousarray(
        -log_probs.reshape(num_classes, -1), dtype=np.float32)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=SMOOTHNESS_SXY, compat=SMOOTHNESS_COMPAT)
    crf.addPairwiseBilateral(
        sxy=params.theta_alpha, srgb=params.theta_beta,
        rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=params.w1)
    q = np.asarray(crf.inference(iterations), dtype=np.float32)
    labels = q.reshape(num_classes, height, width).argmax(0)
    return labels.astype(np.uint8)
