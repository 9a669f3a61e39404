"""The class-score files of the CRF stage (paper sections 2 and 4.2): one
``STEM.npz`` per image, as
:class:`fashionseg.runner.score_hook.SaveDecodeScoresHook`
writes them (see there for the fields). Reading them needs no
MMSegmentation."""
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fashionseg.errors import DataError
from fashionseg.utils.atomic_write import atomic_write

FLOAT16_MAX = float(np.finfo(np.float16).max)


def save_scores(path: Path, scores: np.ndarray, stem: str, height: int,
                width: int, input_height: int = None,
                input_width: int = None) -> None:
    """Write one score file atomically: float16, or float32 where a score
    lies beyond float16's range (it would become infinite). Scores that
    are NaN or infinite already are refused."""
    scores = np.asarray(scores, dtype=np.float32)
    if not np.isfinite(scores).all():
        raise ValueError(f'{path}: the class scores of {stem} hold NaN or '
                         'infinite values; the model is broken')
    fits = scores.size == 0 or np.abs(scores).max() <= FLOAT16_MAX
    with atomic_write(path, binary=True) as f:
        np.savez_compressed(
            f, scores=scores.astype(np.float16 if fits else np.float32),
            stem=stem,
            height=np.int32(height), width=np.int32(width),
            input_height=np.int32(input_height or height),
            input_width=np.int32(input_width or width))


def load_scores(path: Path) -> dict:
    """Read a score file written by :func:`save_scores`; a damaged one (cut
    short, not an archive, without a field) is a :class:`DataError` that
    names it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            record = dict(scores=data['scores'], stem=str(data['stem']),
                          height=int(data['height']),
                          width=int(data['width']),
                          input_height=int(data['input_height']),
                          input_width=int(data['input_width']))
    except FileNotFoundError:
        raise
    except NPZ_READ_ERRORS as error:
        raise DataError(
            f'{path}: not a whole score file of tools/test.py --out '
            f'({npz_error_reason(error)}); write the scores again') from None
    problem = _scores_problem(record)
    if problem:
        raise DataError(f'{path}: not a score file of tools/test.py --out '
                        f'({problem}); write the scores again')
    return record


# How much larger than its score map a network input may be: the decode
# heads score at 1/4 (FPN) or 1/8 (PSPNet, FCN) of it.
MAX_INPUT_TO_SCORES = 64


def _scores_problem(record: dict) -> str:
    """What makes a read score record other than :func:`save_scores`
    writes one (empty: nothing)."""
    scores = record['scores']
    if scores.ndim != 3 or 0 in scores.shape:
        return f'scores of shape {scores.shape}, not classes x h x w'
    if scores.dtype.kind != 'f':
        return f'{scores.dtype} scores, not floating point'
    if not 0 < record['height'] <= record['input_height'] or \
            not 0 < record['width'] <= record['input_width']:
        return (f'an image of {record["height"]} x {record["width"]} in a '
                f'network input of {record["input_height"]} x '
                f'{record["input_width"]}')
    if record['input_height'] > MAX_INPUT_TO_SCORES * scores.shape[1] or \
            record['input_width'] > MAX_INPUT_TO_SCORES * scores.shape[2]:
        return (f'a network input of {record["input_height"]} x '
                f'{record["input_width"]} for a score map of '
                f'{scores.shape[1]} x {scores.shape[2]}')
    if not np.isfinite(scores).all():
        return 'scores that are not finite (NaN or infinite)'
    return ''


# What reading a damaged ``.npz`` raises: cut short, not an archive, a
# member cut short, a field missing, a field of another kind.
NPZ_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, TypeError,
                   zipfile.BadZipFile, zlib.error)


def npz_error_reason(error: Exception) -> str:
    """One of :data:`NPZ_READ_ERRORS` in a few words."""
    if isinstance(error, KeyError):
        # numpy's own words: "NAME is not a file in the archive".
        return str(error.args[0]) if error.args else 'a field is missing'
    if isinstance(error, ValueError) and 'allow_pickle' in str(error):
        # What numpy says of a file that is no .npz archive at all.
        return 'not an .npz archive'
    return str(error) or type(error).__name__
