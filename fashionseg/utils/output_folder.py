"""Output folders a tool owns (``tools/test.py --out``, ``tools/crf.py
apply --out``): the tool refuses a folder that holds files it does not
write, and a run leaves in it only what it wrote, so that a folder
reused by a smaller run does not keep a larger run's files beside
metrics that cover fewer images."""
import fnmatch
from pathlib import Path
from typing import Iterable, List, Sequence

from fashionseg.errors import UsageError
from fashionseg.utils.atomic_write import is_temporary


class OutputFolderError(UsageError):
    """An output folder that would lose or mix up files: one holding files
    its tool did not write, one that is a file, one that holds the input,
    or outputs that would land on an input or on each other."""


def claim_output_folder(folder, patterns: Sequence[str], tool: str,
                        option: str = '--out') -> List[Path]:
    """Check that ``folder`` (if it exists) holds only files whose names
    match ``patterns`` (what ``tool`` writes there); temporaries of an
    interrupted write are removed. Returns the files an earlier run left,
    which :func:`remove_unwritten` clears once this run has written its
    own."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f'{option} {folder} is a file, not a folder')
    if not folder.is_dir():
        return []
    earlier, foreign = [], []
    for path in sorted(folder.iterdir()):
        if is_temporary(path) and path.is_file():
            path.unlink()
        elif path.is_file() and any(fnmatch.fnmatch(path.name, pattern)
                                    for pattern in patterns):
            earlier.append(path)
        else:
            foreign.append(path)
    if foreign:
        shown = ', '.join(str(p) for p in foreign[:3])
        more = f' and {len(foreign) - 3} more' if len(foreign) > 3 else ''
        raise OutputFolderError(
            f'{option} {folder} holds files {tool} did not write ({shown}'
            f'{more}); choose a new or empty folder')
    return earlier


def remove_unwritten(earlier: Iterable[Path], written: Iterable) -> int:
    """Remove the files of an earlier run that this run did not write;
    returns how many."""
    keep = {Path(p).resolve() for p in written}
    removed = 0
    for path in earlier:
        if path.resolve() not in keep and path.exists():
            path.unlink()
            removed += 1
    return removed
