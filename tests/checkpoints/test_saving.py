"""A training killed (SIGKILL) while it writes a checkpoint resumes with
--auto-resume from the last complete epoch (past a newer checkpoint
damaged on disk), finishes its schedule, and --export-best exports the
best epoch's weights."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO
from tool_process import run_tool
from training_helpers import (CONFIG_DIR, build_converted_datasets,
                              small_run_options)

# Runs tools/train.py with mmengine's checkpoint writer slowed down: the
# second epoch's checkpoint is half written, a signal file appears, and the
# process waits to be killed.
SLOW_SAVE = '''
import runpy, sys, time
import mmengine.runner.runner as runner_module
original = runner_module.save_checkpoint
signal_path = sys.argv.pop(1)

def half_written(checkpoint, filename, *args, **kwargs):
    if 'epoch_2' in str(filename):
        with open(filename, 'wb') as f:
            f.write(b'PK\\x03\\x04 half of a checkpoint')
        open(signal_path, 'w').close()
        time.sleep(600)
    return original(checkpoint, filename, *args, **kwargs)

runner_module.save_checkpoint = half_written
sys.argv[0] = 'tools/train.py'
runpy.run_path('tools/train.py', run_name='__main__')
'''


def _cli_options(options):
    return [f'{k}={json.dumps(v).replace(" ", "")}'
            if isinstance(v, list) else f'{k}={v}'
            for k, v in options.items()]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return build_converted_datasets(tmp_path_factory.mktemp('data'))['ccp']


def test_a_kill_during_a_save_resumes_from_the_last_whole_epoch(
        data_root, tmp_path):
    work = tmp_path / 'train'
    exported = tmp_path / 'model.pth'
    args = [str(CONFIG_DIR / 'fcn_r101_ccp.py'), '--work-dir', str(work),
            '--no-pretrained', '--device', 'cpu', '--auto-resume',
            '--export-best', str(exported), '--cfg-options',
            *_cli_options(small_run_options('fcn_r101', data_root,
                                            max_epochs=3, train_images=2,
                                            val_images=1))]
    signal_file = tmp_path / 'saving'
    env = dict(os.environ, PYTHONWARNINGS='ignore',
               PYTHONPATH=os.pathsep.join([str(REPO)] + [
                   p for p in [os.environ.get('PYTHONPATH')] if p]))
    first = subprocess.Popen(
        [sys.executable, '-c', SLOW_SAVE, str(signal_file)] + args,
        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not signal_file.exists():
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, 'the second save never started'
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    # Epoch 1's checkpoint survived the interrupted save of epoch 2.
    assert (work / 'epoch_1.pth').is_file()
    assert not (work / 'epoch_2.pth').exists()
    # A newer checkpoint damaged on disk in its middle (its end, the zip
    # directory, intact: torch itself would load it with wrong weights)
    # is skipped, with its name and why.
    damaged = bytearray((work / 'epoch_1.pth').read_bytes())
    middle = len(damaged) // 2
    damaged[middle:middle + 64] = bytes(b ^ 0xFF for b in
                                        damaged[middle:middle + 64])
    (work / 'epoch_2.pth').write_bytes(bytes(damaged))

    second = run_tool('train.py', *args, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f'resuming from {work / "epoch_1.pth"}' in \
        second.stdout + second.stderr
    assert f'not resuming from {work / "epoch_2.pth"}: ' in \
        second.stdout + second.stderr
    assert 'fails its checksum' in second.stdout + second.stderr
    log = sorted(work.glob('*/*.log'))[-1].read_text()
    assert 'Epoch(train) [1]' not in log
    assert 'Epoch(train) [2]' in log and 'Epoch(train) [3]' in log
    assert (work / 'epoch_3.pth').is_file()
    assert not list(work.glob('.*.partial'))
    # The exported model is the best epoch's.
    (best,) = work.glob('best_aAcc_epoch_*.pth')
    best_state = torch.load(best, map_location='cpu',
                            weights_only=True)['state_dict']
    exported_state = torch.load(exported, map_location='cpu',
                                weights_only=True)['state_dict']
    assert best_state.keys() == exported_state.keys()
    for key in best_state:
        torch.testing.assert_close(best_state[key], exported_state[key])
