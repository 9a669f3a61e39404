"""Atomic writes: a reader never sees a half-written result file or folder.

Every file the harness writes goes through a temporary file beside it and a
rename (:func:`atomic_write`, :func:`atomic_path`); a dataset or release
folder is built beside its target and swapped in whole
(:func:`replace_folder`).
"""
import fcntl
import glob
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import List

# The prefix of every temporary file (``.STEM.tmp-RANDOM.SUFFIX``): hidden,
# and recognisable as this module's, so that a folder's reader can skip
# what an interrupted writer left (:func:`is_temporary`).
TEMPORARY_MARK = '.tmp-'
# At most this many bytes of the target's stem in a temporary's name.
MAX_STEM = 100


def is_temporary(path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_path`."""
    name = Path(path).name
    return name.startswith('.') and TEMPORARY_MARK in name


def _read_umask() -> int:
    """The process's umask: from ``/proc/self/status`` where Linux gives
    it, else by setting it and back (done once, at import, before any
    thread writes: the setting is process-wide)."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('Umask:'):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


def _create(path: Path) -> None:
    """Create ``path``, private (0600), failing if it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@contextmanager
def atomic_path(path, suffix: str = None):
    """Yield a temporary path beside ``path`` (with ``path``'s suffix, for
    writers that choose the format by it) and rename it to ``path`` once
    the block ends without error; on error the temporary file goes. The
    file gets the mode a plain write would give it (0666 less the umask),
    not the private 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    tmp = None
    try:
        # The name is known before the file exists: a stop signal
        # (SIGTERM, turned into an exception by the tools, or Ctrl-C)
        # arriving the moment after the file is made, whichever thread
        # receives it, finds the name to remove. (tempfile.mkstemp returns
        # the name only after making the file, and blocking the signals
        # holds them back from the calling thread only.) The stem is cut
        # so that a name near the file system's limit (255 bytes) still
        # has a temporary.
        stem = path.stem
        while len(os.fsencode(stem)) > MAX_STEM:  # whole characters
            stem = stem[:-1]
        while tmp is None:
            tmp = path.parent / (f'.{stem}{TEMPORARY_MARK}'
                                 f'{secrets.token_hex(6)}{suffix}')
            try:
                _create(tmp)
            except FileExistsError:
                tmp = None
        yield tmp
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        # (Best effort: where the temporary could not be made, say in a
        # read-only folder, the error that says so is the one to see.)
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)
        raise


@contextmanager
def atomic_write(path, binary: bool = False):
    """Yield a file object open for writing; its content replaces ``path``
    in one rename when the block ends without error."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb' if binary else 'w') as f:
            yield f


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_write(path) as f:
        f.write(text)


def replace_folder(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target`` (same file system),
    replacing what was there with two renames (the old folder set aside
    beside it first, then removed); ``new`` gets the mode of a plain
    ``mkdir``."""
    new, target = Path(new), Path(target)
    # A folder made by tempfile.mkdtemp is private (0700); the result gets
    # the mode a plain mkdir would give it.
    os.chmod(new, 0o777 & ~_umask())
    if not target.exists():
        os.replace(new, target)
        return
    with _held(Path(tempfile.mkdtemp(dir=target.parent,
                                     prefix=f'.{target.name}.old-'))) as old:
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def building_folder_beside(target: Path):
    """Yield a new private folder beside ``target`` in which to build its
    replacement (``.NAME.tmp-RANDOM``, then :func:`replace_folder`),
    locked for as long as the block runs (``flock``: the kernel releases
    it however the process ends), so that a later run tells a running
    build from a killed one's (:func:`remove_abandoned_folders`)."""
    target = Path(target)
    with _held(Path(tempfile.mkdtemp(
            dir=target.parent, prefix=f'.{target.name}.tmp-'))) as folder:
        yield folder


@contextmanager
def _held(folder: Path):
    handle = os.open(folder, os.O_RDONLY)
    try:
        with suppress(OSError):  # a file system without such locks
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(handle)


def remove_abandoned_folders(target: Path) -> List[Path]:
    """Remove what a killed run left beside ``target``: the folders of
    :func:`building_folder_beside` and :func:`replace_folder` that no
    running process holds (a set-aside old folder only once ``target``
    is in place again); returns those removed. Where the file system
    cannot lock, nothing is removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for kind in ('tmp', 'old'):
        if kind == 'old' and not target.exists():
            continue  # it may be all that is left of the target
        pattern = glob.escape(f'.{target.name}.{kind}-') + '*'
        for path in sorted(target.parent.glob(pattern)):
            if path.is_symlink() or not path.is_dir() or \
                    not _abandoned(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def _abandoned(folder: Path) -> bool:
    """Whether no process holds ``folder``'s lock (:func:`_held`)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # held by a running build, or no locks here
        return False
    finally:
        os.close(handle)
