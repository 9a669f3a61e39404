"""`make demo JOBS=2` (tools/grid.py) end to end, against the serial demo
run (its own file, so that pytest-xdist runs it beside the serial run's
tests)."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from demo_clone import (DEMO, DVC, QUICK_EPOCHS, QUICK_INTERVAL, quick_clone,
                        run_quiet, serial_demo_tables, user_env)


def _kill_training(clone: Path, run: str) -> bool:
    """SIGKILL the training process of ``run`` (e.g. fpn_x101/seed0)
    started in ``clone``, as the kernel's out-of-memory killer would."""
    import psutil
    model, seed = run.split('/')
    for process in psutil.process_iter(['cmdline', 'cwd']):
        command = ' '.join(process.info['cmdline'] or [])
        if process.info['cwd'] == str(clone) and 'tools/train.py' in \
                command and f'/{model}/{seed}/' in command:
            process.kill()
            return True
    return False


@pytest.mark.slow
def test_demo_grid_with_a_killed_job_gives_the_serial_tables(
        request, tmp_path_factory):
    """`make demo JOBS=2` (tools/grid.py) with one training job killed
    after its first checkpoint: the other jobs finish, what needs the
    killed one waits, the rerun submits only the missing stages and
    resumes the run from its checkpoint, and the tables are the serial
    run's (with as many threads per training run), the timings aside.
    (The serial run is asked for only at the end, so that another xdist
    worker can build it meanwhile.)"""
    clone = quick_clone(tmp_path_factory.mktemp('grid'))
    grid = [sys.executable, 'tools/grid.py', 'demo-report', '--jobs', '2',
            '--threads', str(torch.get_num_threads())]
    env = user_env()
    run = clone / DEMO['work_dirs'] / 'ccp' / 'fpn_x101' / 'seed0'
    with subprocess.Popen(grid, cwd=clone, env=env, text=True,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as first:
        deadline = time.monotonic() + 600
        first_checkpoint = run / 'train' / f'epoch_{QUICK_INTERVAL}.pth'
        while not first_checkpoint.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert _kill_training(clone, 'fpn_x101/seed0')
        output, _ = first.communicate(timeout=900)
    assert first.returncode == 1, output
    assert 'FAILED demo-train@ccp-fpn_x101-0' in output, output
    log = run / 'logs' / 'demo-train@ccp-fpn_x101-0'
    assert f'failed: demo-train@ccp-fpn_x101-0; log: {log}' in output
    assert 'not run (something upstream failed): demo-report' in output
    others = [f'demo-train@ccp-{m}-{s}' for m in DEMO['models']
              for s in DEMO['seeds']]
    others.remove('demo-train@ccp-fpn_x101-0')
    for name in others:
        assert f'finished {name} ' in output, output

    second = run_quiet(grid, clone)
    assert second.returncode == 0, second.stdout + second.stderr
    started = {line.split()[2] for line in second.stdout.splitlines()
               if ' started ' in line}
    assert 'demo-train@ccp-fpn_x101-0' in started
    assert not started & set(others), started
    train_log = sorted((run / 'train').glob('*/*.log'))[-1].read_text()
    # From the first checkpoint (or, where the kill came after the last
    # epoch's checkpoint, that one), validated first.
    resumed = re.search(
        rf'resumed epoch: ({QUICK_INTERVAL}|{QUICK_EPOCHS}),', train_log)
    assert resumed, train_log[-3000:]
    assert f'validating the resumed epoch {resumed[1]}' in train_log
    assert 'dvc status: the stages are up to date' in second.stdout
    status = run_quiet(DVC + ['status', '--json', 'demo-report'], clone)
    assert json.loads(status.stdout) == {}

    tables = [json.loads((clone / DEMO['results'] / 'tables.json')
                         .read_text()),
              serial_demo_tables(request.getfixturevalue('demo_clone'))]
    for table in tables:
        table.pop('benchmark')  # measured timings differ run to run
    assert tables[0] == tables[1]
