"""Atomic writes leave nothing half-written, even when a stop signal
arrives while the temporary file is being made."""
import os
import signal
import threading
from pathlib import Path

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


def test_a_name_near_the_file_systems_limit_has_a_temporary(tmp_path):
    """A 240-character photo name: its temporary's name stays within
    the 255 bytes a file name may have."""
    for stem in ('x' * 240, '\u3042' * 80):  # 240 bytes in UTF-8 too
        path = tmp_path / (stem + '.png')
        module.write_text_atomic(path, 'labels')
        assert path.read_text() == 'labels'
    assert len(list(tmp_path.iterdir())) == 2


def test_a_temporary_that_cannot_be_made_reports_why(tmp_path,
                                                     monkeypatch):
    """In a read-only folder neither making the temporary nor removing it
    works: the error is the one that says why it could not be made."""
    import errno

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system', str(args[0]))

    monkeypatch.setattr(module, '_create', read_only)
    monkeypatch.setattr(module.os, 'unlink', read_only)
    with pytest.raises(OSError) as error:
        with module.atomic_path(tmp_path / 'x.png'):
            pass
    assert error.value.errno == errno.EROFS
    assert error.value.__context__ is None  # not raised while removing


def test_folders_a_killed_run_left_are_removed_and_a_running_ones_kept(
        tmp_path):
    """What a SIGKILL leaves beside a folder being replaced (its build
    folder, or the old folder set aside) goes at the next run: no process
    holds its lock any more. A build that is running holds it (in this
    process or another, on this machine or on another sharing the file
    system), and keeps its folder; so do folders of other names."""
    import subprocess
    import sys

    from fashionseg.utils.atomic_write import (building_folder_beside,
                                               remove_abandoned_folders,
                                               replace_folder)
    target = tmp_path / 'ccp'
    abandoned = [tmp_path / '.ccp.tmp-abc', tmp_path / '.ccp.old-def']
    kept = [tmp_path / '.cfpd.tmp-a', tmp_path / 'notes']
    for folder in abandoned + kept:
        folder.mkdir()
        (folder / 'file').write_text('x')
    # Another process building beside the target, holding its folder.
    holder = subprocess.Popen(
        [sys.executable, '-c', (
            'import sys, time; from pathlib import Path; '
            'from fashionseg.utils.atomic_write import '
            'building_folder_beside\n'
            'with building_folder_beside(Path(sys.argv[1])) as f:\n'
            '    print(f, flush=True); time.sleep(60)'), str(target)],
        stdout=subprocess.PIPE, text=True)
    try:
        elsewhere = Path(holder.stdout.readline().strip())
        with building_folder_beside(target) as running:
            # The old folder set aside stays while the target is missing:
            # it may be all that is left of it.
            assert remove_abandoned_folders(target) == [abandoned[0]]
            target.mkdir()
            assert remove_abandoned_folders(target) == [abandoned[1]]
            assert running.is_dir() and elsewhere.is_dir()
            assert all(folder.is_dir() for folder in kept)
            (running / 'file').write_text('new')
            replace_folder(running, target)
        assert (target / 'file').read_text() == 'new'
        assert not list(tmp_path.glob('.ccp.old-*'))
    finally:
        holder.kill()
        holder.wait()
    # The other process has ended: its build folder is abandoned now.
    assert remove_abandoned_folders(target) == [elsewhere]
