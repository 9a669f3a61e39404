"""The class-score files of the CRF stage (paper section 3.3): one
``STEM.npz`` per image, as :class:`fashionseg.scores.SaveDecodeScoresHook`
writes them (see there for the fields). Reading them needs no
MMSegmentation."""
import os
from pathlib import Path

import numpy as np


def save_scores(path: Path, scores: np.ndarray, stem: str, height: int,
                width: int, input_height: int = None,
                input_width: int = None) -> None:
    """Write one score file atomically."""
    tmp = path.with_name(f'.{path.name}.tmp')
    with open(tmp, 'wb') as f:
        np.savez_compressed(
            f, scores=scores.astype(np.float16), stem=stem,
            height=np.int32(height), width=np.int32(width),
            input_height=np.int32(input_height or height),
            input_width=np.int32(input_width or width))
    os.replace(tmp, path)


def load_scores(path: Path) -> dict:
    """Read a score file written by :func:`save_scores`."""
    with np.load(path, allow_pickle=False) as data:
        return dict(scores=data['scores'], stem=str(data['stem']),
                    height=int(data['height']), width=int(data['width']),
                    input_height=int(data['input_height']),
                    input_width=int(data['input_width']))
