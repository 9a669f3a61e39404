"""Reading MATLAB files of either kind the releases use.

MATLAB v7 (and older) files are read with ``scipy.io.loadmat``; v7.3 files
are HDF5 behind a 512-byte header and are read with ``h5py``. In HDF5, MATLAB
stores arrays transposed, cell arrays and struct-array fields as object
references, and strings as uint16 character codes.
"""
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from .records import DatasetFormatError


def read_mat(path: Path) -> dict:
    """A MATLAB v7 (or older) file's variables, or an error naming the
    file: scipy raises many kinds on an empty, text, cut or altered file
    (its own read errors, zlib's, ValueError, ...)."""
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # noqa: BLE001 (reported with the file)
        raise DatasetFormatError(
            f'{path}: not a readable MATLAB file (empty, cut short, '
            f'damaged or another kind of file: {type(error).__name__}: '
            f'{error})') from None


def open_h5_mat(path: Path) -> h5py.File:
    """A MATLAB v7.3 (HDF5) file opened for reading, or an error naming
    the file."""
    try:
        return h5py.File(path, 'r')
    except (OSError, ValueError) as error:
        raise DatasetFormatError(
            f'{path}: a damaged MATLAB v7.3 (HDF5) file ({error})') from None


def is_hdf5_mat(path: Path) -> bool:
    return h5py.is_hdf5(str(path))


def char_array_to_str(array) -> str:
    """A MATLAB char array (uint16 codes, in HDF5) or a str (in v7)."""
    if isinstance(array, str):
        return array
    array = np.asarray(array)
    if array.dtype.kind in 'US':
        return ''.join(str(s) for s in array.ravel())
    if array.dtype == object:  # a 1x1 cell around a string
        return ''.join(char_array_to_str(a) for a in array.ravel())
    return ''.join(chr(int(c)) for c in array.ravel())


def deref(h5file: h5py.File, ref, what: str):
    """Follow an HDF5 object reference, with a clear error if it dangles."""
    try:
        if not ref:
            raise ValueError('null reference')
        return h5file[ref]
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise DatasetFormatError(
            f'{h5file.filename}: {what} holds a reference that does not '
            f'resolve ({error})') from None


def require(container, name: str, path: Path, what: str = 'variable'):
    """``container[name]`` or an error naming the file and the field."""
    try:
        keys = container.keys() if hasattr(container, 'keys') else \
            container.dtype.names or ()
    except AttributeError:
        keys = ()
    if name not in keys:
        raise DatasetFormatError(
            f'{path}: {what} "{name}" is missing (found: '
            f'{", ".join(sorted(k for k in keys if not k.startswith("_")))})')
    return container[name]


def check_names(found, expected, path: Path, variable: str,
                aliases=None) -> None:
    """Class names in the file must be the documented ones, in order, since
    the order is the label index."""
    aliases = aliases or {}

    def norm(name):
        name = name.strip().lower()
        return aliases.get(name, name)

    found = [norm(n) for n in found]
    expected_n = [norm(n) for n in expected]
    if found != expected_n:
        diffs = [f'{i}: {f!r} (expected {e!r})'
                 for i, (f, e) in enumerate(zip(found, expected_n)) if f != e]
        if len(found) != len(expected_n):
            diffs.insert(0, f'{len(found)} names, expected {len(expected)}')
        raise DatasetFormatError(
            f'{path}: {variable} does not list the expected classes in '
            f'order: {"; ".join(diffs[:5])}')
