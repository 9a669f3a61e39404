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
                    or isinstance(value, bool) or not low <= value <= high):
                raise ValueError(f'CRF parameter {name}={value!r} is outside '
                                 f'the integers {low}..{high}')

    def as_dict(self) -> dict:
        return {k: int(v) for k, v in asdict(self).items()}


def upsampled_log_probs(scores: np.ndarray, height: int, width: int,
                        input_height: int, input_width: int) -> np.ndarray:
    """log softmax of the class scores at image size (classes x H x W).

    The scores cover the network input (``input_height`` x
    ``input_width``, the image padded at the bottom and right); they are
    upsampled as MMSegmentation does (bilinear, ``align_corners=False``) and
    cropped to the image.
    """
    logits = torch.from_numpy(np.asarray(scores, np.float32))[None]
    logits = F.interpolate(logits, size=(input_height, input_width),
                           mode='bilinear', align_corners=False)
    logits = logits[0, :, :height, :width]
    return torch.log_softmax(logits, dim=0).numpy()
