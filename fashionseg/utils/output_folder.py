"""Output folders a tool owns (``tools/test.py --out``, ``tools/crf.py
apply --out``), and the result files it writes (metrics, the CRF
search's result): replaced only when they are its own.

A tool marks a folder it writes with a hidden ``.written-by`` file naming
itself. It writes only into a folder that is new, empty, or marked as its
own, and refuses any other (naming what is there) before it does any
work; and a run leaves in its folder only what it wrote, so that a folder
reused by a smaller run does not keep a larger run's files beside
metrics that cover fewer images.
"""
import contextlib
import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from fashionseg.errors import UsageError
from fashionseg.utils.atomic_write import is_temporary, write_text_atomic

MARKER = '.written-by'


class OutputFolderError(UsageError):
    """An output folder that would lose or mix up files: one holding files
    its tool did not write, one that is a file, one that holds the input,
    or outputs that would land on an input or on each other."""


def _within(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def refuse_foreign(folder, foreign: Sequence[Path], tool: str,
                   option: str = '--out', owner: Optional[str] = None):
    """Raise the one error for an output folder holding ``foreign``
    files, the first three named."""
    listed = ', '.join(str(p) for p in foreign[:3])
    more = f' and {len(foreign) - 3} more' if len(foreign) > 3 else ''
    raise OutputFolderError(
        f'{option} {folder} holds files {tool} did not write ({listed}'
        f'{more}{f"; it is the folder of {owner}" if owner else ""}); '
        'choose a new or empty folder')


def refuse_under_a_file(path, option: str = '--out',
                        itself: bool = True) -> None:
    """Refuse an output ``path`` that is a file (with ``itself``) or lies
    under one, before anything is made there."""
    path = Path(path)
    for place in (path, *path.parents) if itself else path.parents:
        if place.exists() and not place.is_dir():
            raise OutputFolderError(
                f'{option} {path} is a file, not a folder' if place == path
                else f'{option} {path}: {place} is a file, not a folder')


def refuse_within_inputs(folder, inputs: Sequence,
                         option: str = '--out') -> None:
    """Refuse an output folder that is or lies within one of ``inputs``
    (e.g. the dataset a tool reads), before anything is made there."""
    for source in inputs:
        if source is not None and _within(folder, source):
            raise OutputFolderError(
                f'{option} {folder} lies within the input {source}; '
                'choose a folder outside it')


@contextlib.contextmanager
def locked_output_folder(folder, tool: str,
                         option: str = '--out') -> Iterator[Path]:
    """``folder`` (made when new) held by this run alone: a second run
    writing into it stops at once, rather than removing this run's
    temporaries and outputs as an earlier run's. The lock is the kernel's
    (``flock`` on the folder itself): it leaves no file behind and ends
    with the block, or with the process however it ends."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f'{option} {folder} is a file, not a folder')
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise OutputFolderError(f'{option} {folder}: cannot make or open it '
                                f'({error.strerror})') from None
    try:
        if not os.access(folder, os.W_OK):
            raise OutputFolderError(f'{option} {folder}: cannot write there '
                                    '(read-only)')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderError(
                f'{option} {folder} is being written by another run of '
                f'{tool}; let it finish, or choose another folder') from None
        except OSError as error:
            # A file system without such locks (some network and FUSE
            # ones): the run goes on, and says what it cannot check.
            warnings.warn(f'{option} {folder}: cannot be locked '
                          f'({error.strerror}); make sure that one run at a '
                          'time writes there', stacklevel=3)
        yield folder
    finally:
        os.close(handle)  # (which releases the lock)


def check_output_folder(folder, tool: str, option: str = '--out',
                        inputs: Sequence = ()) -> List[Path]:
    """What :func:`claim_output_folder` refuses, checked without changing
    anything (before any work, for a folder a later step claims): a file,
    or a path under one; a folder that is or lies within one of
    ``inputs``; one that holds anything and is not marked as ``tool``'s.
    Returns what it holds."""
    folder = Path(folder)
    refuse_under_a_file(folder, option)
    refuse_within_inputs(folder, inputs, option)
    entries = sorted(folder.iterdir()) if folder.is_dir() else []
    marker = folder / MARKER
    owner = marker.read_text().strip() if marker.is_file() else None
    if entries and owner != tool:
        refuse_foreign(folder, [p for p in entries if p.name != MARKER],
                       tool, option, owner)
    return entries


def claim_output_folder(folder, tool: str, option: str = '--out',
                        inputs: Sequence = (),
                        main_process: bool = True,
                        kinds: Sequence[str] = ()) -> List[Path]:
    """Take ``folder`` for ``tool``: refused when it is a file, when it is
    or lies within one of ``inputs`` (e.g. the dataset a tool reads), or
    when it holds anything and is not marked as ``tool``'s. Marks it, and
    removes temporaries of an interrupted write. Returns the files of the
    ``kinds`` ``tool`` writes (name endings, e.g. ``.npz``) that an
    earlier run left there, which :func:`remove_unwritten` clears once
    this run has written its own; other files (a user's notes) stay. Only
    the main process of a distributed run changes anything."""
    folder = Path(folder)
    entries = check_output_folder(folder, tool, option, inputs)
    earlier = [p for p in entries if p.is_file() and p.name != MARKER
               and not is_temporary(p)
               and p.name.lower().endswith(tuple(kinds))]
    if main_process:
        for path in entries:
            if is_temporary(path) and path.is_file():
                path.unlink()
        write_text_atomic(folder / MARKER, tool + '\n')
    return earlier


@contextlib.contextmanager
def claimed_output_folder(folder, tool: str, option: str = '--out',
                          inputs: Sequence = (),
                          main_process: bool = True,
                          kinds: Sequence[str] = ()
                          ) -> Iterator[List[Path]]:
    """:func:`claim_output_folder` for the run inside the block, which
    alone writes there (:func:`locked_output_folder`, taken by the main
    process of a distributed run): a second run would take this run's
    temporaries for an interrupted run's. Yields the files an earlier run
    left. An output within the inputs is refused before the folder is
    made."""
    refuse_within_inputs(folder, inputs, option)
    with locked_output_folder(folder, tool, option) if main_process \
            else contextlib.nullcontext():
        yield claim_output_folder(folder, tool, option,
                                  main_process=main_process, kinds=kinds)


def remove_unwritten(earlier: Iterable[Path], written: Iterable,
                     main_process: Optional[bool] = True) -> int:
    """Remove the files of an earlier run that this run did not write;
    returns how many."""
    if not main_process:
        return 0
    keep = {Path(p).resolve() for p in written}
    removed = 0
    for path in earlier:
        if path.resolve() not in keep and path.is_file():
            path.unlink()
            removed += 1
    return removed


def json_with_keys(path: Path, keys: Sequence[str]) -> bool:
    """Whether ``path`` holds a JSON object with (at least) ``keys``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and set(keys) <= set(record)


def is_test_metrics_file(path) -> bool:
    """A metrics JSON of ``tools/test.py``."""
    return json_with_keys(path, ('aAcc', 'mIoU', 'per_class', 'checkpoint'))


def is_crf_metrics_file(path) -> bool:
    """A metrics JSON of ``tools/crf.py apply``."""
    return json_with_keys(path, ('aAcc', 'mIoU', 'per_class', 'crf'))


def is_confusion_file(path) -> bool:
    """The per-image confusion matrices written beside a metrics JSON."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {'stems', 'matrices', 'classes'} <= set(data.files)
    except Exception:  # any file that is not such an archive
        return False


def is_search_file(path) -> bool:
    """A CRF search result of ``tools/crf.py search``."""
    return json_with_keys(path, ('best', 'best_accuracy', 'trials'))


def is_inference_benchmark_file(path) -> bool:
    """A record of ``tools/benchmark_inference.py``."""
    return json_with_keys(path, ('images_per_s', 'device_name',
                                 'parameters'))


def is_training_benchmark_file(path) -> bool:
    """A record of ``tools/benchmark_train.py``."""
    return json_with_keys(path, ('images_per_second_full_loop',
                                 'images_per_second_model_only'))


def is_environment_file(path) -> bool:
    """A record of ``tools/collect_env.py``."""
    return json_with_keys(path, ('platform', 'python', 'device',
                                 'packages'))


def is_crf_benchmark_file(path) -> bool:
    """A record of ``tools/benchmark_crf.py`` (speed or agreement)."""
    return json_with_keys(path, ('image', 'classes', 'params')) or \
        json_with_keys(path, ('images', 'param_sets', 'min_agreement'))


def check_result_file(path, tool: str, option: str,
                      is_own: Callable[[Path], bool],
                      inputs: Sequence = (),
                      beside: Dict[Path, Callable[[Path], bool]] = None,
                      folders: Dict[str, Optional[str]] = None) -> None:
    """Refuse, before any work, a result file ``path`` (and the files
    written ``beside`` it, each with its own ``is_own``) that would lose
    something: a folder, a path under a file, one that is or lies within
    one of ``inputs`` (the data, the scores, the checkpoint), or an
    existing file that is not an earlier result of ``tool``: a rerun
    replaces its own results, nothing else; nor may it be one of the
    ``folders`` (option: path) the same run writes, made or not yet."""
    path = Path(path)
    for other, folder in (folders or {}).items():
        if folder is not None and os.path.abspath(path) == \
                os.path.abspath(folder):
            raise OutputFolderError(f'{option} {path} is the {other} '
                                    'folder; give the name of a file')
    if path.is_dir():
        raise OutputFolderError(f'{option} {path} is a folder; give the '
                                'name of a file to write')
    refuse_under_a_file(path, option, itself=False)
    for source in inputs:
        if source is not None and _within(path, source):
            raise OutputFolderError(
                f'{option} {path} is or lies within the input {source}; '
                'choose a file outside it')
    if (path.exists() or path.is_symlink()) and not is_own(path):
        raise OutputFolderError(
            f'{option} {path} exists and is not a result {tool} wrote; it '
            'is left as it is: choose another name, or remove it yourself')
    for other, is_theirs in (beside or {}).items():
        other = Path(other)
        if other.is_dir() or ((other.exists() or other.is_symlink())
                              and not is_theirs(other)):
            raise OutputFolderError(
                f'{option} {path}: {other}, which {tool} writes beside it, '
                'exists and is not a file it wrote; choose another name')
