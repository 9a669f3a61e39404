"""Checkpoints that load under torch's weights-only unpickler.

Since torch 2.6, ``torch.load`` unpickles with ``weights_only=True`` and
refuses mmengine's checkpoints, which hold ``HistoryBuffer`` objects, numpy
scalars and numpy arrays in their message hub. Turning weights-only loading
off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` or ``weights_only=False``) would
let any checkpoint a user downloads run code on their machine.

Instead, the harness keeps what it saves to tensors and plain Python types:

* :class:`PlainCheckpointHook` rewrites a checkpoint just before mmengine
  writes it (``HistoryBuffer`` to a tagged dict, numpy to Python numbers and
  lists), checks that nothing else is left, and restores the ``HistoryBuffer``
  objects right after a checkpoint is loaded, so ``--resume`` continues the
  loss history as before.
* :func:`load_local_checkpoint` replaces mmengine's loader for local paths
  and always unpickles with ``weights_only=True``, so a file that needs any
  other global (a crafted pickle, or a checkpoint saved without the hook) is
  refused with :class:`UnsafeCheckpointError` instead of being executed.
"""
import errno
import os.path as osp
import pickle
import zipfile
import zlib
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmseg.registry import HOOKS

from fashionseg.errors import DataError

HISTORY_BUFFER_TAG = '__history_buffer__'

# Leaf types that torch's weights-only unpickler accepts without any
# allow-listing.
_PLAIN_LEAVES = (torch.Tensor, torch.dtype, torch.device, torch.Size, str,
                 bytes, bool, int, float, complex, type(None))


class UnsafeCheckpointError(DataError):
    """A checkpoint that cannot be loaded with weights-only unpickling."""


class DamagedCheckpointError(DataError):
    """A checkpoint file that torch cannot read: empty, cut short, altered
    on disk, or not a checkpoint at all."""


def _history_buffer_to_plain(buffer: HistoryBuffer) -> dict:
    log_history, count_history = buffer.data
    return {
        HISTORY_BUFFER_TAG: True,
        'log_history': np.asarray(log_history).tolist(),
        'count_history': np.asarray(count_history).tolist(),
        'max_length': int(buffer.max_length),
    }


def _plain_to_history_buffer(record: dict) -> HistoryBuffer:
    return HistoryBuffer(record['log_history'], record['count_history'],
                         record['max_length'])


def to_plain(obj: Any, path: str = 'checkpoint') -> Any:
    """Return ``obj`` with mmengine and numpy objects turned into plain types.

    Raises:
        TypeError: if an object remains that weights-only loading would
            refuse; the message names where in the checkpoint it is.
    """
    if isinstance(obj, HistoryBuffer):
        return _history_buffer_to_plain(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, _PLAIN_LEAVES):
        return obj
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, to_plain(v, f'{path}[{k!r}]'))
                           for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: to_plain(v, f'{path}[{k!r}]') for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f'{path}[{i}]') for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(
        f'{path} holds a {type(obj).__module__}.{type(obj).__qualname__}, '
        'which torch cannot load with weights_only=True; convert it to '
        'tensors or plain Python types before saving')


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for the objects mmengine needs back."""
    if isinstance(obj, dict):
        if obj.get(HISTORY_BUFFER_TAG) is True:
            return _plain_to_history_buffer(obj)
        restored = {k: from_plain(v) for k, v in obj.items()}
        return OrderedDict(restored) if isinstance(obj,
                                                   OrderedDict) else restored
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Save checkpoints as tensors and plain types; restore on load.

    Runs last among hooks so that what other hooks add to the checkpoint is
    converted too.
    """

    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            checkpoint[key] = to_plain(checkpoint[key], f'checkpoint[{key!r}]')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])


def load_local_checkpoint(filename: str, map_location=None) -> Any:
    """Load a local checkpoint with ``torch.load(weights_only=True)``.

    Registered as mmengine's loader for local paths, so ``Runner.resume``,
    ``load_from`` and ``mmseg.apis.init_model`` all go through it. A
    damaged file (:func:`check_archive`) or one torch cannot read raises
    :class:`DamagedCheckpointError`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    check_archive(filename)
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message ends by suggesting weights_only=False, which is
        # exactly what must not be done with an untrusted file.
        lines = [line.strip() for line in str(error).splitlines()]
        detail = next((line for line in lines
                       if 'global' in line.lower()), None)
        if detail is None and not zipfile.is_zipfile(filename):
            # Nothing refused, and not torch's archive format: an empty,
            # cut or text file (legacy pickles end here too).
            raise _unreadable(filename, error) from None
        detail = detail or (lines[0] if lines else 'unpickling refused')
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename}: it is not made only of '
            f'tensors and plain Python data ({detail}). Loading it would '
            'run code stored in the file. Checkpoints written by this '
            "harness's training runs load as they are; re-save other "
            'weights as a plain state_dict (torch.save(model.state_dict(), '
            'path)) in a trusted environment.') from None
    except OSError as error:
        # A file cut before torch's archive directory is read as a legacy
        # pickle and fails to seek; a file that cannot be read at all
        # (permissions, an I/O error) is reported as it is.
        if error.errno in (errno.EACCES, errno.EPERM, errno.EIO) or \
                zipfile.is_zipfile(filename):
            raise
        raise _unreadable(filename, error) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        # torch's archive reader on a damaged file (a central directory
        # cut off, a record missing, ...); other errors (out of memory, a
        # file that cannot be opened) are raised as they are.
        if isinstance(error, RuntimeError) and not any(
                word in str(error) for word in ('PytorchStreamReader',
                                                'zip', 'archive')):
            raise
        raise DamagedCheckpointError(
            f'{filename}: the checkpoint is damaged and cannot be loaded '
            f'({_first_line(error)})') from None


def pickled_records(filename) -> Optional[bytes]:
    """The pickled top level of a checkpoint in torch's zip archive (its
    ``data.pkl``: the record's keys and small values, not the tensors'
    data), read without unpickling; None for a file that is no such
    archive."""
    try:
        with zipfile.ZipFile(filename) as archive:
            names = [n for n in archive.namelist()
                     if n.endswith('/data.pkl')]
            return archive.read(names[0]) if len(names) == 1 else None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error):
        return None


def is_exported_weights(path) -> bool:
    """Weights ``tools/train.py --export-best`` wrote: a torch archive
    with a state dict and no run progress (never a training checkpoint,
    which holds mmengine's ``message_hub``; its ``meta`` may quote the
    config, optimiser and all)."""
    pickled = pickled_records(path)
    return pickled is not None and b'state_dict' in pickled and \
        b'message_hub' not in pickled


def check_archive(filename: str) -> None:
    """Refuse a checkpoint whose records fail their CRC-32 (torch's zip
    archive stores one per record but does not check it when loading, so
    a file altered on disk would load with wrong weights) or whose archive
    is cut. A file that is not a zip archive at all is left to
    ``torch.load`` (older checkpoints are plain pickles)."""
    if not zipfile.is_zipfile(filename):
        return
    try:
        with zipfile.ZipFile(filename) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DamagedCheckpointError(
            f'{filename}: the checkpoint is damaged and cannot be read '
            f'({_first_line(error)})') from None
    if bad is not None:
        raise DamagedCheckpointError(
            f'{filename}: the checkpoint is damaged: its record {bad} fails '
            'its checksum (the file was altered or cut after it was saved)')


def _unreadable(filename: str, error: BaseException):
    """A file that is not torch's archive and does not unpickle."""
    return DamagedCheckpointError(
        f'{filename}: not a checkpoint torch can read '
        f'({_first_line(error)}); it is empty, cut short or another kind '
        'of file')


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


CheckpointLoader.register_scheme(
    prefixes='', loader=load_local_checkpoint, force=True)


class CheckpointMismatchError(DataError):
    """A checkpoint whose weights are not the model's (another config or
    another class count)."""


def _first(names, count: int = 3) -> str:
    names = sorted(names)
    shown = ', '.join(names[:count])
    return shown + (f' and {len(names) - count} more'
                    if len(names) > count else '')


def load_weights_strictly(model: torch.nn.Module, checkpoint: str,
                          config: str = None) -> dict:
    """Load ``checkpoint``'s weights into ``model``, refusing any missing,
    unexpected or differently shaped weight with the config, the
    checkpoint and the first differing names (mmengine's loading only
    warns, and a model tested with half its weights would score quietly
    wrong). Returns the checkpoint's ``meta``."""
    from mmengine.runner.checkpoint import _load_checkpoint

    if '://' not in str(checkpoint) and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    loaded = _load_checkpoint(str(checkpoint), map_location='cpu')
    state = loaded.get('state_dict', loaded) if isinstance(loaded,
                                                           dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f'{checkpoint} holds no state dict')
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state.items())
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    reshaped = {k for k in set(expected) & set(state)
                if tuple(expected[k].shape) != tuple(state[k].shape)}
    if missing or unexpected or reshaped:
        problems = []
        if reshaped:
            k = sorted(reshaped)[0]
            problems.append(
                f'{len(reshaped)} of different shape ({_first(reshaped)}; '
                f'{k} is {tuple(state[k].shape)} in the checkpoint, '
                f'{tuple(expected[k].shape)} in the model)')
        if missing:
            problems.append(f'{len(missing)} missing ({_first(missing)})')
        if unexpected:
            problems.append(f'{len(unexpected)} unexpected '
                            f'({_first(unexpected)})')
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} does not fit the model of '
            f'{config or "the config"}: weights ' + '; '.join(problems)
            + '. Is it a checkpoint of this config?')
    model.load_state_dict(state, strict=True)
    return loaded.get('meta', {}) or {}
