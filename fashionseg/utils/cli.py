"""What the command-line tools share, declared once: their arguments, the
one way a usage or data error ends a tool (:func:`run_tool`), and writing
a JSON record (:func:`emit_json`)."""
import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Tuple, Type

from fashionseg.errors import ERROR_EXIT_STATUS, HarnessError
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.dvc_stage import params_note


class Terminated(BaseException):
    """SIGTERM (a ``kill``, a cluster's time limit, DVC stopping a stage)
    while a tool runs: raised where the tool is, so that every ``finally``
    and atomic write cleans up behind it (Python's default is to die on
    the spot, leaving temporaries). Not an ``Exception``: code that
    handles errors does not swallow it."""


def _terminate(signum, frame):
    # Once: a second SIGTERM during the clean-up would cut it short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(f'stopped by {signal.Signals(signum).name}')


def _default_in_child() -> None:
    # A forked worker (a process pool) dies on SIGTERM as usual: its pool
    # ends it with one, and must not get a traceback from each worker.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_in_child)


def run_tool(main: Callable[[], Optional[int]],
             also: Tuple[Type[BaseException], ...] = ()) -> None:
    """Run a tool's ``main`` and exit with its status (0 when it returns
    None). A :class:`fashionseg.errors.HarnessError`, and any of ``also``
    (errors of other libraries that a tool reports as they are, e.g. an
    ``OSError`` naming a file), ends the tool with one ``error: MESSAGE``
    line on stderr and exit status 2, without a traceback. SIGTERM and
    Ctrl-C end it after its clean-up with one line and status 143
    (128 + 15) and 130 (128 + 2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    if os.environ.get('DVC_STAGE'):
        _name_params_in_usage_errors()
    try:
        status = main()
    except Terminated as stop:
        print(f'error: {stop}; nothing half-written was left',
              file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print('error: stopped by Ctrl-C (SIGINT); nothing half-written was '
              'left', file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (HarnessError,) + tuple(also) as error:
        message = str(error) + params_note(str(error))
    else:
        sys.exit(status or 0)
    # Printed once the failed call's frames are gone, so that what they
    # held (a progress bar) has finished its line.
    print(f'error: {message}', file=sys.stderr)
    sys.exit(ERROR_EXIT_STATUS)


def _name_params_in_usage_errors() -> None:
    """argparse's errors (``--trials: must be at least 1``) end with the
    params.yaml key behind the option, in this process (a DVC stage's
    tool): argparse prints them itself, before :func:`run_tool` sees
    anything."""
    error = argparse.ArgumentParser.error

    def with_params_note(parser, message):
        error(parser, message + params_note(message))
    argparse.ArgumentParser.error = with_params_note


def emit_json(record: dict, out: Optional[Path] = None,
              echo: bool = True) -> None:
    """A tool's JSON record: written atomically to ``out`` when given, and
    printed when ``echo`` (or when there is no ``out``)."""
    text = json.dumps(record, indent=2) + '\n'
    if out is not None:
        write_text_atomic(out, text)
    if echo or out is None:
        sys.stdout.write(text)


def tool_description(doc: str) -> str:
    """A tool's ``--help`` text: its docstring's first paragraph."""
    return ' '.join(doc.split('\n\n')[0].split())


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (:func:`fashionseg.utils.device.
    select_device`)."""
    # Here rather than at the top: tools/wheelhouse.py uses this module
    # where torch (which the device module imports) is not installed.
    from fashionseg.utils.device import DEVICES
    parser.add_argument('--device', choices=DEVICES, default='auto',
                        help='cpu hides any GPU; cuda fails if there is none '
                        '(default: a GPU if there is one)')


def add_max_images_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-images N``: the first N images of each split (a short real
    run; ``tools/train.py``, ``test.py``, ``crf.py`` and ``figures.py``
    take it alike and record it)."""
    parser.add_argument('--max-images', type=positive_int, metavar='N',
                        help='use only the first N images of each split '
                        '(a short run; recorded with the results)')


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _int_from(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _int_from(text, 0)


def seed_int(text: str) -> int:
    """An argparse type: a random seed, 0 to 2**32 - 1 (what NumPy's and
    mmengine's seeding take)."""
    value = _int_from(text, 0)
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(
            f'must be at most {2**32 - 1}, not {value}')
    return value


def _int_from(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a whole number: {text!r}')
    if value < least:
        raise argparse.ArgumentTypeError(
            f'must be at least {least}, not {value}')
    return value
