"""Atomic writes leave nothing half-written, even when a stop signal
arrives while the temporary file is being made."""
import os
import signal
import tempfile

import pytest
from conftest import file_mode

from fashionseg.utils import atomic_write as module


class Stopped(BaseException):
    pass


def _raise(signum, frame):
    raise Stopped


def test_a_stop_signal_while_the_temporary_is_made_leaves_nothing(
        tmp_path, monkeypatch):
    make = tempfile.mkstemp

    def make_then_signalled(*args, **kwargs):
        made = make(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives right here
        return made

    monkeypatch.setattr(module.tempfile, 'mkstemp', make_then_signalled)
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        with pytest.raises(Stopped):
            module.write_text_atomic(tmp_path / 'result.json', '{}\n')
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_written_file_gets_a_plain_writes_mode(tmp_path):
    module.write_text_atomic(tmp_path / 'result.json', '{}\n')
    assert (tmp_path / 'result.json').read_text() == '{}\n'
    assert (tmp_path / 'result.json').stat().st_mode & 0o777 == file_mode()
