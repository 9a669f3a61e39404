"""Atomic writes leave nothing half-written, even when a stop signal
arrives while the temporary file is being made."""
import os
import signal
import threading

import pytest
from conftest import file_mode

from fashionseg.utils import atomic_write as module


class Stopped(BaseException):
    pass


def _raise(signum, frame):
    raise Stopped


@pytest.mark.parametrize('other_thread', [False, True])
def test_a_stop_signal_while_the_temporary_is_made_leaves_nothing(
        tmp_path, monkeypatch, other_thread):
    """The signal arrives the moment the temporary file exists, in a
    process with one thread or with another thread running (as the tools'
    decoding threads do, where the kernel may hand the signal to any
    thread)."""
    create = module._create

    def create_then_signalled(path):
        create(path)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives right here

    monkeypatch.setattr(module, '_create', create_then_signalled)
    previous = signal.signal(signal.SIGTERM, _raise)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    if other_thread:
        thread.start()
    try:
        with pytest.raises(Stopped):
            module.write_text_atomic(tmp_path / 'result.json', '{}\n')
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
    assert list(tmp_path.iterdir()) == []


def test_a_written_file_gets_a_plain_writes_mode(tmp_path):
    module.write_text_atomic(tmp_path / 'result.json', '{}\n')
    assert (tmp_path / 'result.json').read_text() == '{}\n'
    assert (tmp_path / 'result.json').stat().st_mode & 0o777 == file_mode()
