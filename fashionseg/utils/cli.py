"""What the command-line tools share, declared once: their arguments, the
one way a usage or data error ends a tool (:func:`run_tool`), and writing
a JSON record (:func:`emit_json`)."""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple, Type

from fashionseg.errors import ERROR_EXIT_STATUS, HarnessError
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.device import DEVICES


def run_tool(main: Callable[[], Optional[int]],
             also: Tuple[Type[BaseException], ...] = ()) -> None:
    """Run a tool's ``main`` and exit with its status (0 when it returns
    None). A :class:`fashionseg.errors.HarnessError`, and any of ``also``
    (errors of other libraries that a tool reports as they are, e.g. an
    ``OSError`` naming a file), ends the tool with one ``error: MESSAGE``
    line on stderr and exit status 2, without a traceback."""
    try:
        status = main()
    except (HarnessError,) + tuple(also) as error:
        message = str(error)
    else:
        sys.exit(status or 0)
    # Printed once the failed call's frames are gone, so that what they
    # held (a progress bar) has finished its line.
    print(f'error: {message}', file=sys.stderr)
    sys.exit(ERROR_EXIT_STATUS)


def emit_json(record: dict, out: Optional[Path] = None,
              echo: bool = True) -> None:
    """A tool's JSON record: written atomically to ``out`` when given, and
    printed when ``echo`` (or when there is no ``out``)."""
    text = json.dumps(record, indent=2) + '\n'
    if out is not None:
        write_text_atomic(out, text)
    if echo or out is None:
        sys.stdout.write(text)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (:func:`fashionseg.utils.device.
    select_device`)."""
    parser.add_argument('--device', choices=DEVICES, default='auto',
                        help='cpu hides any GPU; cuda fails if there is none '
                        '(default: a GPU if there is one)')


def add_max_images_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-images N``: the first N images of each split (a short real
    run; ``tools/train.py``, ``test.py``, ``crf.py`` and ``figures.py``
    take it alike and record it)."""
    parser.add_argument('--max-images', type=_positive, metavar='N',
                        help='use only the first N images of each split '
                        '(a short run; recorded with the results)')


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
    return value
