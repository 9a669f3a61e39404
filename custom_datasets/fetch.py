"""Downloading the raw releases (``tools/fetch_data.py``).

Downloads go through ``gdown``, which handles Google Drive (CFPD's host) as
well as plain HTTP, shows a progress bar, retries, resumes a partial file
and detects a body shorter than announced. What arrives is then checked to be
the expected kind of file (a MATLAB file or a zip archive, not an HTML page)
before it is kept; archives are extracted without letting any member land
outside the target folder.
"""
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gdown
import h5py
import scipy.io

from fashionseg.errors import DataError
from fashionseg.utils.atomic_write import atomic_path, write_text_atomic

from .cfpd import CFPD_IMAGES, CFPD_MAT
from .fashionista import FASHIONISTA_MAT


class FetchError(DataError):
    """A download or local copy that did not give the expected release."""


@dataclass(frozen=True)
class ReleaseSource:
    name: str
    url: Optional[str]  # plain HTTP(S)
    drive_id: Optional[str]  # Google Drive file id
    filename: str  # what the download is saved as
    kind: str  # 'mat' or 'zip'
    # For archives: a path that identifies the release's root folder.
    marker: Optional[str] = None
    # For MATLAB files: variables a complete file holds.
    variables: tuple = ()


CCP_COMMIT = 'fe34fb77721a9973fbae92c05f7f12b664d10110'
SOURCES = {
    'fashionista': ReleaseSource(
        'fashionista',
        'http://vision.is.tohoku.ac.jp/~kyamagu/private/fashionista2/data/'
        'fashionista-v1.0.mat', None, FASHIONISTA_MAT, 'mat',
        variables=('truths', 'test_index', 'labels')),
    'cfpd': ReleaseSource(
        'cfpd', None, '0BwIcx4kBjPrcTzlQYi1VbmthVVU', 'cfpd.zip', 'zip',
        marker=CFPD_MAT),
    'ccp': ReleaseSource(
        'ccp', 'https://github.com/bearpaw/clothing-co-parsing/archive/'
        f'{CCP_COMMIT}.zip', None, f'clothing-co-parsing-{CCP_COMMIT}.zip',
        'zip', marker='label_list.mat'),
}

HTML_STARTS = (b'<!doctype', b'<html', b'<?xml', b'<head', b'<body')
# What an archive may expand to: the releases are a few GB at most and
# compress photos (ratio near 1); a member that expands far more, or an
# archive far larger in total, is not one of them (a "zip bomb").
MAX_EXTRACTED_BYTES = 20 * 2**30
MAX_COMPRESSION_RATIO = 200
# Written into a release folder once every file of the release is in
# place; a release without it (an interrupted fetch) is fetched again.
COMPLETE_MARKER = '.fetch-complete'
# The entries a fetch put into its folder, written before they are moved
# there: only these are replaced by a later fetch into the same folder.
FETCHED_ENTRIES = '.fetched-entries'


def _source_location(source: ReleaseSource) -> str:
    if source.drive_id:
        return f'Google Drive file id {source.drive_id}'
    return source.url


def _manual_hint(source: ReleaseSource, out: Path) -> str:
    return (f'Download it by hand from {_source_location(source)} and run: '
            f'python tools/fetch_data.py {source.name} --out {out} '
            f'--from PATH_TO_THE_DOWNLOAD')


def _require_variables(path: Path, names, source: ReleaseSource) -> None:
    missing = [v for v in source.variables if v not in names]
    if missing:
        raise FetchError(f'{path} lacks the variables {missing}: truncated, '
                         f'or not the {source.name} release')


def check_download(path: Path, source: ReleaseSource) -> None:
    """Raise FetchError unless ``path`` is a complete file of the expected
    kind."""
    with open(path, 'rb') as f:
        head = f.read(1024)
    if head.lstrip()[:16].lower().startswith(HTML_STARTS):
        raise FetchError(f'{path} is an HTML page, not the '
                         f'{source.kind} file of {source.name}')
    if source.kind == 'zip':
        if not zipfile.is_zipfile(path):
            raise FetchError(f'{path} is not a zip archive (or is truncated)')
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise FetchError(f'{path} is a damaged zip archive ({error})')
        if bad is not None:
            raise FetchError(f'{path}: member {bad} fails its CRC check')
        return
    # A MATLAB file: v7.3 is HDF5, older versions are read with scipy.
    if h5py.is_hdf5(str(path)):
        try:
            with h5py.File(path, 'r') as mat:
                names = set(mat.keys())
        except OSError as error:
            raise FetchError(f'{path} is a damaged MATLAB v7.3 file '
                             f'({error})') from None
        _require_variables(path, names, source)
        return
    if not head.startswith(b'MATLAB'):
        raise FetchError(f'{path} is not a MATLAB file')
    # A full read is the only way to notice a truncated v7 file: scipy
    # silently drops the variables that lie past the end.
    try:
        names = set(scipy.io.loadmat(str(path)))
    except Exception as error:  # scipy raises many kinds on a bad file
        raise FetchError(f'{path} is a damaged or truncated MATLAB file '
                         f'({type(error).__name__}: {error})') from None
    _require_variables(path, names, source)


def safe_extract(archive_path: Path, target: Path,
                 max_bytes: int = MAX_EXTRACTED_BYTES,
                 max_ratio: float = MAX_COMPRESSION_RATIO) -> None:
    """Extract a zip archive, refusing members with absolute paths or that
    would land outside ``target`` (``..``), symbolic links, and archives
    that would expand to more than ``max_bytes`` in all or whose members
    expand more than ``max_ratio`` times."""
    target = target.resolve()
    with zipfile.ZipFile(archive_path) as archive:
        total = 0
        for member in archive.infolist():
            name = member.filename
            if name.startswith(('/', '\\')) or (len(name) > 1
                                                  and name[1] == ':'):
                raise FetchError(f'{archive_path}: member {name!r} has an '
                                 'absolute path; refusing the archive')
            total += member.file_size
            if total > max_bytes:
                raise FetchError(
                    f'{archive_path}: expands to more than {max_bytes:,} '
                    f'bytes (the limit, MAX_EXTRACTED_BYTES); refusing the '
                    'archive')
            if member.file_size > max_ratio * max(member.compress_size, 1):
                raise FetchError(
                    f'{archive_path}: member {name!r} expands '
                    f'{member.file_size / max(member.compress_size, 1):.0f} '
                    f'times (the limit, MAX_COMPRESSION_RATIO, is '
                    f'{max_ratio:g}); refusing the archive')
            destination = (target / member.filename).resolve()
            if destination != target and target not in destination.parents:
                raise FetchError(f'{archive_path}: member {member.filename!r}'
                                 ' would be extracted outside the target '
                                 'folder; refusing the archive')
            mode = member.external_attr >> 16
            if (mode & 0o170000) == 0o120000:
                raise FetchError(f'{archive_path}: member {member.filename!r}'
                                 ' is a symbolic link; refusing the archive')
        archive.extractall(target)


def _find_release_root(folder: Path, marker: str) -> Path:
    """The folder holding ``marker``: ``folder`` itself or one below it."""
    if (folder / marker).exists():
        return folder
    found = sorted(p.parent for p in folder.glob(f'*/{marker}'))
    if len(found) != 1:
        raise FetchError(f'{folder}: expected one folder holding {marker}, '
                         f'found {len(found)}')
    return found[0]


def _fetched_entries(out: Path) -> Optional[set]:
    """The names an earlier fetch put into ``out`` (every entry, for a
    release fetched before they were listed), or None where no fetch
    wrote ``out``."""
    listed = out / FETCHED_ENTRIES
    if listed.is_file():
        return set(listed.read_text().split('\n')) - {''}
    if (out / COMPLETE_MARKER).is_file():
        return {p.name for p in out.iterdir()}
    return None


def check_release_folder(name: str, out: Path) -> None:
    """Before anything is fetched: ``out`` is new, empty, or a folder a
    fetch wrote (an archive's release replaces only what a fetch put
    there), and a MATLAB release's file in it, where there is one, is
    that release or a fetch's (never a user's file of the same name,
    which would be taken for a finished download and removed)."""
    source = SOURCES[name]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FetchError(f'--out {out}: a file, not a folder')
    if not out.is_dir():
        return
    if source.kind == 'mat':
        path = out / source.filename
        if path.exists():
            try:
                check_download(path, source)
            except FetchError as error:
                raise FetchError(
                    f'{error}; it is not a release this tool fetched, so it '
                    'is left as it is: move it away, or give another '
                    '--out') from None
        return
    entries = {p.name for p in out.iterdir() if not p.name.startswith('.')}
    fetched = _fetched_entries(out)
    foreign = sorted(entries - (fetched or set()))
    if foreign:
        raise FetchError(
            f'--out {out} holds {len(foreign)} entries no fetch put there '
            f'({", ".join(foreign[:3])}{", ..." if len(foreign) > 3 else ""})'
            '; the release would replace or mix with them: give a new or '
            'empty folder (or, for a release an interrupted fetch of an '
            'earlier version left, remove the folder and fetch again)')


def _move_contents(staged: Path, out: Path) -> None:
    """Move a fully staged release into ``out``, replacing what an earlier
    fetch put there (:func:`check_release_folder` refused anything else).
    The completion marker goes first and comes back last, so that a fetch
    interrupted half-way is never taken for a complete release; the
    entries are listed before they are moved, so that its rerun may
    replace them."""
    (out / COMPLETE_MARKER).unlink(missing_ok=True)
    names = {entry.name for entry in staged.iterdir()}
    write_text_atomic(out / FETCHED_ENTRIES, '\n'.join(sorted(
        names | (_fetched_entries(out) or set()))) + '\n')
    for entry in sorted(staged.iterdir()):
        destination = out / entry.name
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():
            destination.unlink()
        os.replace(entry, destination)
    (out / COMPLETE_MARKER).write_text('complete\n')


def _install_release(source: ReleaseSource, download: Path,
                     out: Path) -> Path:
    """Put the checked release into ``out`` (extracting an archive), through
    a temporary folder so that ``out`` never holds a half-extracted one."""
    out.mkdir(parents=True, exist_ok=True)
    if source.kind == 'mat':
        destination = out / source.filename
        if download.resolve() != destination.resolve():
            with atomic_path(destination) as tmp:
                shutil.copyfile(download, tmp)
        return destination
    tmp = Path(tempfile.mkdtemp(dir=out, prefix='.extract-'))
    try:
        safe_extract(download, tmp)
        _move_contents(_find_release_root(tmp, source.marker), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _copy_folder_release(source: ReleaseSource, folder: Path,
                         out: Path) -> Path:
    """``--from`` a folder already holding the extracted release."""
    marker = source.marker or source.filename
    root = _find_release_root(folder, marker)
    if source.name == 'cfpd' and not (root / CFPD_IMAGES).is_dir():
        raise FetchError(f'{root}: no {CFPD_IMAGES}/ folder beside '
                         f'{CFPD_MAT}')
    if source.kind == 'mat':
        check_download(root / source.filename, source)
        return _install_release(source, root / source.filename, out)
    if root.resolve() == out.resolve():
        (out / COMPLETE_MARKER).write_text('complete\n')
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix='.copy-'))
    try:
        shutil.copytree(root, tmp / 'release')
        _move_contents(tmp / 'release', out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def release_present(name: str, out: Path) -> bool:
    """Whether ``out`` already holds dataset ``name``'s complete release
    (what ``fetch_release`` leaves there; an archive's release only once
    every file of it is in place, :data:`COMPLETE_MARKER`)."""
    source = SOURCES[name]
    out = Path(out)
    if source.kind == 'mat':
        path = out / source.filename
        if not path.is_file():
            return False
        try:
            check_download(path, source)
        except FetchError:
            return False
        return True
    if not (out / COMPLETE_MARKER).is_file():
        return False
    if not (out / source.marker).exists():
        return False
    return source.name != 'cfpd' or (out / CFPD_IMAGES).is_dir()


def local_copy(name: str, folder: Path) -> Optional[Path]:
    """What a user put in ``folder`` (the pipeline's downloads/DATASET):
    the downloaded file when it holds one file of the release's kind, the
    folder itself when it holds anything else, None when empty or absent."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    entries = [p for p in folder.iterdir() if not p.name.startswith('.')]
    if not entries:
        return None
    kind = SOURCES[name].kind
    files = [p for p in entries if p.is_file() and p.suffix == f'.{kind}']
    if len(entries) == 1 and len(files) == 1:
        return files[0]
    return folder


def fetch_release(name: str, out: Path, from_path: Optional[Path] = None,
                  url: Optional[str] = None, retries: int = 3,
                  quiet: bool = False) -> Path:
    """Fetch dataset ``name``'s raw release into ``out``.

    Args:
        from_path: a local copy (the downloaded file, or a folder holding the
            extracted release) to use instead of downloading.
        url: overrides the release's address (mirrors, tests).

    Returns:
        Where the release now is (``out``, or the .mat file in it).
    """
    source = SOURCES[name]
    out = Path(out)
    if from_path is None or Path(from_path).resolve() != out.resolve():
        check_release_folder(name, out)
    out.mkdir(parents=True, exist_ok=True)
    if from_path is not None:
        from_path = Path(from_path)
        if not from_path.exists():
            raise FetchError(f'{from_path}: no such file or folder')
        if from_path.is_dir():
            return _copy_folder_release(source, from_path, out)
        try:
            check_download(from_path, source)
        except FetchError as error:
            raise FetchError(f'{error}. {_manual_hint(source, out)}') from None
        return _install_release(source, from_path, out)

    download = out / source.filename if source.kind == 'mat' else \
        out / f'.{source.filename}'
    try:
        gdown.download(
            url=url or source.url, id=None if url else source.drive_id,
            output=str(download), quiet=quiet, resume=True, retries=retries,
            timeout=60)
    except Exception as error:  # gdown and requests raise many kinds
        raise FetchError(
            f'Downloading {name} from {url or _source_location(source)} '
            f'failed ({type(error).__name__}: {error}). '
            f'{_manual_hint(source, out)}') from None
    try:
        check_download(download, source)
    except FetchError as error:
        download.unlink(missing_ok=True)
        raise FetchError(f'{error}. {_manual_hint(source, out)}') from None
    try:
        return _install_release(source, download, out)
    finally:
        if source.kind == 'zip':
            download.unlink(missing_ok=True)
