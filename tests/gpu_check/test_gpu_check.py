"""make gpu-check's command at toy sizes on the CPU, so that it never
rots on machines without a GPU."""
import json
import subprocess
import sys

from conftest import REPO

from fashionseg.gpu_check import run, steps

STEPS = ['stack', 'train', 'test', 'crf', 'inference', 'projection']


def test_quick_check_runs_every_step(tmp_path):
    out = tmp_path / 'check'
    result = subprocess.run(
        [sys.executable, 'tools/gpu_check.py', '--device', 'cpu', '--quick',
         '--out', str(out)], cwd=REPO, capture_output=True, text=True,
        timeout=900)
    record = json.loads((out / 'gpu_check.json').read_text())
    failed = {k: v.get('error') for k, v in record['checks'].items()
              if v['status'] != 'pass'}
    assert result.returncode == 0, (failed, result.stderr[-2000:])
    assert list(record['checks']) == STEPS
    assert record['passed'] and not failed
    checks = record['checks']
    assert checks['train']['resumed_to_epoch'] == 2
    assert checks['train']['benchmark']['fp32_batch5'][
        'images_per_second_full_loop'] > 0
    assert set(checks['test']['score_files']) == {'val', 'test'}
    assert checks['crf']['agreement']['min_agreement'] >= 0.99
    assert checks['crf']['search']['images'] == steps.QUICK.search_images
    assert checks['inference']['engine']['best'] is not None
    assert checks['projection']['total_hours'] > 0
    table = (out / 'gpu_check.md').read_text()
    for step in STEPS:
        assert f'| {step} | pass |' in table


def test_a_failing_step_does_not_hide_the_rest(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError('the test tool crashed')

    monkeypatch.setattr(steps.GPUCheck, 'test', broken)
    # Only the steps that do not need a trained model, to stay quick.
    monkeypatch.setattr(steps.GPUCheck, 'train', lambda self: {})
    record = run.run_gpu_check(tmp_path, steps.CheckPaths.of_checkout(REPO),
                               'cpu', quick=True, progress=lambda line: None)
    assert list(record['checks']) == STEPS
    assert record['checks']['test'] == dict(
        record['checks']['test'], status='fail',
        error='RuntimeError: the test tool crashed')
    assert record['checks']['stack']['status'] == 'pass'
    # Later steps ran and reported their own failure.
    assert 'error' in record['checks']['crf']
    assert not record['passed']
    saved = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert saved['checks']['test']['status'] == 'fail'
