"""The fully connected CRF's energy and parameters (Krähenbühl and Koltun,
2011), as the paper applies it to the network's class scores (sections 2
and 4.2); :mod:`fashionseg.crf.pydensecrf_backend` and
:mod:`fashionseg.crf.torch_backend` minimise it.

Energy: unary -log softmax(scores), with the scores bilinearly upsampled to
the image size; a smoothness kernel (sxy 3, compat 3); an appearance kernel
with spatial width theta_alpha, colour width theta_beta and weight w1, in the
paper's (Krähenbühl's) notation; 10 mean-field iterations.
"""
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

SMOOTHNESS_SXY = 3
SMOOTHNESS_COMPAT = 3
MEAN_FIELD_ITERATIONS = 10
# The paper's search space (section 4), integers, inclusive.
PARAM_RANGES = {'theta_alpha': (1, 40), 'theta_beta': (1, 100),
                'w1': (1, 15)}


@dataclass(frozen=True)
class CRFParams:
    """Appearance-kernel parameters, in Krähenbühl's notation."""
    theta_alpha: int  # spatial width (pixels)
    theta_beta: int  # colour width (intensity levels)
    w1: int  # weight

    def __post_init__(self):
        for name, (low, high) in PARAM_RANGES.items():
            value = getattr(self, name)
            if (not isinstance(value, (int, np.integer))
                    or isinstance(value, bool)):
                raise ValueError(
                    f'CRF parameter {name}={value!r} must be an integer '
                    f'({low}..{high}), not {type(value).__name__}')
            if not low <= value <= high:
                raise ValueError(f'CRF parameter {name}={value!r} is outside '
                                 f'the integers {low}..{high}')

    def as_dict(self) -> dict:
        return {k: int(v) for k, v in asdict(self).items()}


def upsampled_log_probs(scores: np.ndarray, height: int, width: int,
                        input_height: int, input_width: int) -> np.ndarray:
    """log softmax of the class scores at image size (classes x H x W);
    :func:`image_log_probs` on numpy arrays."""
    scores = torch.from_numpy(np.asarray(scores, np.float32))
    return image_log_probs(scores, (height, width),
                           (input_height, input_width)).numpy()


def image_log_probs(scores: torch.Tensor, image_shape: tuple,
                    input_shape: tuple, ori_shape: tuple = None
                    ) -> torch.Tensor:
    """log softmax of the class scores at image size, on the scores'
    device.

    The scores cover the network input (``input_shape``, the image of
    ``image_shape`` padded at the bottom and right); they are upsampled as
    MMSegmentation does (bilinear, ``align_corners=False``), cropped to the
    image and, where the test pipeline resized the photo, resized to its
    ``ori_shape``.
    """
    logits = F.interpolate(scores[None].float(), size=tuple(input_shape),
                           mode='bilinear', align_corners=False)
    logits = logits[:, :, :image_shape[0], :image_shape[1]]
    if ori_shape is not None and tuple(ori_shape) != tuple(image_shape):
        logits = F.interpolate(logits, size=tuple(ori_shape),
                               mode='bilinear', align_corners=False)
    return torch.log_softmax(logits[0], dim=0)
