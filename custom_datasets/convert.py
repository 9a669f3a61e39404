"""Converting a raw release into the MMSegmentation layout
(``tools/convert_data.py``)."""
from pathlib import Path
from typing import Dict, Optional

from .ccp import CCPRelease
from .cfpd import CFPDRelease
from .classes import CCP_CLASSES, CFPD_CLASSES, FASHIONISTA_CLASSES
from .fashionista import FashionistaRelease
from .writer import check_output_folder, write_dataset

RELEASES = {
    'fashionista': (FashionistaRelease, FASHIONISTA_CLASSES),
    'cfpd': (CFPDRelease, CFPD_CLASSES),
    'ccp': (CCPRelease, CCP_CLASSES),
}


def convert_release(name: str, src: Path, out: Path,
                    max_size: Optional[int] = None) -> Dict[str, int]:
    """Read the raw release of dataset ``name`` in ``src`` and write it to
    ``out`` (see :mod:`custom_datasets.writer`). Deterministic: a rerun
    writes byte-identical files.

    ``max_size`` scales photos and labels down to that longer side.

    Returns:
        The number of images in each split.
    """
    release_cls, classes = RELEASES[name]
    check_output_folder(out, src)
    release = release_cls(Path(src))
    try:
        split_of = {stem: split
                    for split, stems in release.splits().items()
                    for stem in stems}
        return write_dataset(release, split_of, Path(out), name, classes,
                             total=len(release), max_size=max_size)
    finally:
        release.close()
