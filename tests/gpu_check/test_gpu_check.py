"""make gpu-check's command at toy sizes on the CPU, so that it never rots
on machines without a GPU; and its runner under a step that fails, one
that stops on a usage error and one that hangs past its share of the
budget."""
import json
import os
import platform
import sys

import pytest
import yaml
from conftest import REPO
from tool_process import run_tool

from fashionseg.errors import UsageError
from fashionseg.gpu_check import run, steps

STEPS = list(steps.STEP_NAMES)


@pytest.mark.slow
def test_quick_check_runs_every_step(tmp_path):
    out = tmp_path / 'check'
    result = run_tool('gpu_check.py', '--device', 'cpu', '--quick',
                      '--budget', 600, '--out', out, timeout=900)
    record = json.loads((out / 'gpu_check.json').read_text())
    failed = {k: v.get('error') for k, v in record['checks'].items()
              if v['status'] != 'pass'}
    assert result.returncode == 0, (failed, result.stdout[-3000:])
    assert list(record['checks']) == STEPS
    assert record['passed'] and not failed
    checks = record['checks']
    assert checks['data']['size'] == list(steps.QUICK.image)
    assert checks['train']['resumed_to_epoch'] == 2
    assert checks['train']['benchmark']['fp32_batch5'][
        'images_per_second_full_loop'] > 0
    assert set(checks['test']['score_files']) == {'val', 'test'}
    crf = checks['crf']
    assert crf['agreement']['min_agreement'] >= 0.99
    assert crf['agreement']['pydensecrf_seconds_per_image'] > 0
    assert crf['search']['images'] == steps.QUICK.search_images
    assert crf['search']['projected_seconds_50x108'] > \
        crf['search']['seconds']
    protocol = checks['inference']['paper_protocol']
    assert protocol['images_per_s_with_crf'] < protocol['images_per_s']
    assert checks['inference']['engine']['best'] is not None
    projection = checks['projection']
    assert projection['total_hours'] > 0
    # One row per dataset and model of params.yaml, each model's rates
    # scaled by its forward operations against the check's FPN.
    params = yaml.safe_load((REPO / 'params.yaml').read_text())
    rows = {(row['dataset'], row['model']): row
            for row in projection['datasets']}
    assert set(rows) == {(d, m) for d in params['datasets']
                         for m in params['models']}
    counted = checks['test']['gflop_per_image']
    check = counted['check']
    for (dataset, model), row in rows.items():
        cost = counted[f'{model}_{dataset}']
        # At the dataset's own size (Fashionista's and CFPD's 600 x 400).
        assert cost['size'] == list(steps.RELEASE_IMAGE_SIZES[dataset])
        assert row['forward_gflop_per_image'] == cost['forward'] > 0
        assert row['training_gflop_per_image'] >= cost['forward']
        assert row['test_rate_scale'] == pytest.approx(
            check['forward'] / cost['forward'], abs=1e-3)
        assert row['train_rate_scale'] == pytest.approx(
            check['training'] / cost['training'], abs=1e-3)
    fpn, psp = (rows[('cfpd', m)] for m in ('fpn_x101', 'pspnet_r101'))
    assert psp['train_minutes_per_run'] > fpn['train_minutes_per_run']
    # PSPNet's auxiliary head trains too.
    assert psp['training_gflop_per_image'] > psp['forward_gflop_per_image']
    rates = projection['rates']
    assert rates['test_rate_from'] == 'paper protocol (fp32, batch 1)'
    # params.yaml trains fp32 at batch 5 with the speed-ups.
    assert rates['train_recipe'] == 'fp32_batch5_speedups'
    assert rates['train_images_per_s'] == checks['train']['benchmark'][
        'fp32_batch5_speedups']['images_per_second_full_loop']
    assert projection['rates']['test_images_per_s'] == protocol[
        'images_per_s']
    # The grid's wall time on N GPUs (make repro JOBS=N).
    grid = {int(k): v for k, v in
            checks['projection']['grid_hours'].items()}
    assert grid[1] == pytest.approx(checks['projection']['total_hours'])
    assert grid[1] > grid[2] > grid[4] >= grid[8] > 0
    # What the figures were measured with: the harness's versions, and the
    # machine's own packages, not those installed for the harness.
    stack = checks['stack']
    assert stack['packages']['mmsegmentation'] == '1.2.2'
    assert stack['python'] == platform.python_version()
    assert not {'mmsegmentation', 'mmengine', 'dvclive'} & {
        name.lower() for name in stack['machine_packages']}
    # Every sub-measurement was appended as it was made.
    lines = [json.loads(line) for line in
             (out / 'gpu_check.jsonl').read_text().splitlines()]
    assert {line['step'] for line in lines} >= {'stack', 'train', 'crf',
                                                'inference'}
    # The row that decodes on the device runs where torchvision does and
    # is recorded as skipped, the other rows kept, where it does not.
    decoded, = [line['value'] for line in lines if line['key'] ==
                'engine fp32,channels-last,batch=2,decode=device']
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        assert 'needs torchvision' in decoded['skipped']
    else:
        assert decoded['decode'] == 'device' and decoded['agrees']
    table = (out / 'gpu_check.md').read_text()
    for step in STEPS:
        assert f'| {step} | pass |' in table
    assert 'Traceback' not in result.stdout + result.stderr


def test_failures_usage_errors_and_hangs_are_recorded(tmp_path,
                                                      monkeypatch):
    # A step's least share of the budget, 20 s, is what the hanging step
    # would hang for: 12 s do here (the stack step, which must pass, takes
    # about 3 s; every other step below fails in about as few).
    monkeypatch.setattr(run, 'STEP_START_SECONDS', 12.0)
    out = tmp_path / 'check'
    paths = steps.CheckPaths.of_checkout(REPO)
    tool = [sys.executable, str(REPO / 'tools' / 'gpu_check.py')]
    # A step that measures something, then hangs.
    hang = [sys.executable, '-c', (
        'import json, time; open({!r}, "a").write(json.dumps(dict('
        'step="data", key="before the hang", value=1)) + "\\n"); '
        'time.sleep(600)').format(str(out / 'gpu_check.jsonl'))]
    # A step whose tool stops on a usage error (a GPU asked for where none
    # is visible): one `error:` line, exit status 2, no result file.
    usage = [sys.executable, '-c', (
        'import os, runpy, sys; os.environ["CUDA_VISIBLE_DEVICES"] = ""; '
        'sys.argv = ["gpu_check.py", "--step", "test", "--out", {!r}, '
        '"--device", "cuda"]; runpy.run_path({!r}, run_name="__main__")'
        ).format(str(out), tool[1])]

    def command(name):
        if name == 'data':
            return hang
        if name == 'test':
            return usage
        # The real steps: train and later ones fail, having no data.
        return tool + ['--step', name, '--out', str(out), '--device', 'cpu',
                       '--quick']

    lines = []
    record = run.run_gpu_check(out, paths, 'cpu', quick=True, budget=120,
                               progress=lines.append, command=command)
    checks = record['checks']
    assert list(checks) == STEPS
    assert checks['stack']['status'] == 'pass'
    assert checks['data']['status'] == 'timeout'
    assert checks['data']['wall_seconds'] < checks['data'][
        'timeout_seconds'] + 5
    assert checks['data']['measured'] == {'before the hang': 1}
    assert checks['train']['status'] == 'fail'
    assert 'needs data' in checks['train']['error']
    assert checks['test']['status'] == 'fail'
    assert checks['test']['error'].startswith('error: device cuda was asked')
    for name in ('crf', 'inference', 'projection'):
        assert checks[name]['status'] == 'fail', name
    assert not record['passed']
    saved = json.loads((out / 'gpu_check.json').read_text())
    assert saved['checks']['data']['status'] == 'timeout'
    table = (out / 'gpu_check.md').read_text()
    assert '| data | timeout |' in table and '| test | fail |' in table
    assert any('data: timeout' in line for line in lines)
    # What the hanging step measured was shown as it came.
    assert any('[data' in line and 'before the hang: 1' in line
               for line in lines)


def test_a_stopped_check_records_the_stopped_step_and_did_not_pass(
        tmp_path):
    """Ctrl-C (or SIGTERM) while a step runs: the step's processes end, and
    gpu_check.json says which step was stopped, keeps what it measured,
    and does not pass; a previous run's passing record is not left
    standing."""
    out = tmp_path / 'check'
    out.mkdir()
    (out / 'gpu_check.json').write_text(json.dumps(dict(
        passed=True, device='cpu', checks={})))
    paths = steps.CheckPaths.of_checkout(REPO)
    pid_file = tmp_path / 'pid'
    hang = [sys.executable, '-c', (
        'import json, os, time; open({!r}, "w").write(str(os.getpid())); '
        'open({!r}, "a").write(json.dumps(dict(step="train", key="rate", '
        'value=5)) + "\\n"); time.sleep(600)').format(
            str(pid_file), str(out / 'gpu_check.jsonl'))]
    done = [sys.executable, '-c', 'pass']

    def progress(line):
        if 'rate: 5' in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.run_gpu_check(out, paths, 'cpu', quick=True, budget=120,
                          progress=progress,
                          command=lambda name: hang if name == 'train'
                          else done)
    record = json.loads((out / 'gpu_check.json').read_text())
    assert record['stopped'] and not record['passed']
    assert list(record['checks']) == ['stack', 'data', 'train']
    assert record['checks']['train']['status'] == 'stopped'
    assert record['checks']['train']['measured'] == {'rate': 5}
    # How long the step had run when it was stopped (its process started
    # and measured before the stop).
    assert 0 < record['checks']['train']['wall_seconds'] < 120
    assert '| train | stopped |' in (out / 'gpu_check.md').read_text()
    with pytest.raises(ProcessLookupError):  # the step's process ended
        os.kill(int(pid_file.read_text()), 0)


def test_record_files_of_someone_elses_are_refused_and_a_relative_out_holds(
        tmp_path, monkeypatch):
    """A ``gpu_check.md`` (or ``.json``) in --out that no earlier check
    wrote is refused before anything runs; a relative --out is the one
    below the folder the check was started in, for its steps too (they
    run in the checkout)."""
    paths = steps.CheckPaths.of_checkout(REPO)
    out = tmp_path / 'check'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    (out / 'gpu_check.md').write_text('my own summary')
    with pytest.raises(UsageError, match='gpu_check.md, which an earlier '
                       'gpu-check did not write'):
        run.run_gpu_check(out, paths, 'cpu', quick=True, budget=60)
    assert sorted(p.name for p in out.iterdir()) == [
        'gpu_check.md', 'notes.txt']
    assert (out / 'gpu_check.md').read_text() == 'my own summary'

    given = []

    def step_command(paths, out, *args):
        given.append(out)
        return lambda name: [sys.executable, '-c', 'pass']

    monkeypatch.setattr(run, 'step_command', step_command)
    monkeypatch.chdir(tmp_path)
    record = run.run_gpu_check('relative', paths, 'cpu', quick=True,
                               budget=60, progress=lambda line: None)
    assert given == [tmp_path / 'relative']
    assert (tmp_path / 'relative' / 'gpu_check.json').is_file()
    assert set(record['checks']) == set(STEPS)


def test_an_earlier_runs_work_folder_goes_and_a_foreign_one_stays(
        tmp_path):
    """A rerun into the same --out starts from an empty work folder (an
    earlier run's scores would make tools/test.py refuse its folder, its
    state pass for this run's); a work folder the check did not write is
    refused and left as it is."""
    paths = steps.CheckPaths.of_checkout(REPO)
    done = [sys.executable, '-c', 'pass']
    out = tmp_path / 'check'
    earlier = out / 'work'
    (earlier / 'scores_val').mkdir(parents=True)
    (earlier / 'scores_val' / '0001.npz').write_bytes(b'old')
    (earlier / 'stack.log').write_text('an earlier run, before the mark')
    (earlier / 'state.json').write_text('{"checkpoint": "old.pth"}')
    run.run_gpu_check(out, paths, 'cpu', quick=True, budget=60,
                      progress=lambda line: None, command=lambda name: done)
    assert not (earlier / 'scores_val').exists()
    assert not (earlier / 'state.json').exists()
    assert (earlier / run.WORK_MARKER).is_file()
    # Marked now: the next run replaces it again.
    (earlier / 'checkpoint.pth').write_bytes(b'old')
    run.run_gpu_check(out, paths, 'cpu', quick=True, budget=60,
                      progress=lambda line: None, command=lambda name: done)
    assert not (earlier / 'checkpoint.pth').exists()
    # A second check into a folder a check is running in stops at once,
    # its work folder untouched.
    from fashionseg.utils.output_folder import locked_output_folder
    with locked_output_folder(out, 'tools/gpu_check.py'):
        with pytest.raises(UsageError, match='being written by another run'):
            run.run_gpu_check(out, paths, 'cpu', quick=True, budget=60,
                              command=lambda name: done)
    assert (earlier / run.WORK_MARKER).is_file()
    # Folders of anyone else's files, even beside a file named as the
    # check's first log, and a work that is a file or a link: refused, and
    # left as they were.
    for index, names in enumerate((['notes.txt'],
                                   ['stack.log', 'thesis.tex'])):
        foreign = tmp_path / f'mine{index}' / 'work'
        foreign.mkdir(parents=True)
        for name in names:
            (foreign / name).write_text('mine')
        with pytest.raises(UsageError, match='did not write'):
            run.run_gpu_check(foreign.parent, paths, 'cpu', quick=True,
                              budget=60, command=lambda name: done)
        assert sorted(p.name for p in foreign.iterdir()) == names
    (tmp_path / 'file').mkdir()
    (tmp_path / 'file' / 'work').write_text('mine')
    (tmp_path / 'link').mkdir()
    (tmp_path / 'link' / 'work').symlink_to(tmp_path / 'mine0' / 'work')
    for name in ('file', 'link'):
        with pytest.raises(UsageError, match='is not a folder the gpu-check'):
            run.run_gpu_check(tmp_path / name, paths, 'cpu', quick=True,
                              budget=60, command=lambda name: done)
    assert (tmp_path / 'file' / 'work').read_text() == 'mine'
    assert (tmp_path / 'mine0' / 'work' / 'notes.txt').is_file()


def test_a_failing_tool_is_recorded_by_its_error_line(tmp_path):
    """A step's tool that stops with an error: the record holds its
    `error:` line, not the warnings printed above it."""
    check = steps.GPUCheck(tmp_path, 'cpu', steps.sizes_for(True, False),
                           steps.CheckPaths.of_checkout(REPO))
    with pytest.raises(steps.CheckFailed,
                       match=r'^tools/segment.py failed: error: .*holds no '):
        check._tool('segment.py', tmp_path / 'missing.py',
                    tmp_path / 'missing.pth', tmp_path, '--out',
                    tmp_path / 'out')


@pytest.mark.parametrize('budget,error', [
    (0, 'above 0, not 0'), (-5, 'above 0'), (float('nan'), 'not nan'),
    (float('inf'), 'not inf')])
def test_a_budget_that_is_not_seconds_is_refused(tmp_path, budget, error):
    with pytest.raises(UsageError, match=error):
        run.run_gpu_check(tmp_path / 'check',
                          steps.CheckPaths.of_checkout(REPO), 'cpu',
                          quick=True, budget=budget)
    assert not (tmp_path / 'check').exists()


def test_the_bars_read_what_a_step_measured_before_it_ran_out_of_time():
    from fashionseg.gpu_check.summary import bars
    row = dict(agrees=True, agreement=0.999, model_images_per_s=1000.0,
               end_to_end_images_per_s=700.0,
               fraction_of_peak_model_only=0.19)
    # Slower model only but faster end to end (decoding on the device):
    # each bar takes its own best row.
    slower = dict(row, model_images_per_s=600.0,
                  end_to_end_images_per_s=800.0)
    disagrees = dict(row, agrees=False, agreement=0.98,
                     model_images_per_s=5000.0)
    record = {'checks': {
        'train': {'status': 'timeout', 'measured': {
            'benchmark_fp32_batch5': {'images_per_second_full_loop': 88.0}}},
        'inference': {'status': 'timeout', 'measured': {
            'engine a': slower, 'engine b': row, 'engine c': disagrees}}}}
    found = bars(record)
    assert found['training fp32 batch 5 images/s (full loop)'][
        'measured'] == 88.0
    assert found['engine images/s model only'] == dict(
        measured=1000.0, target=2500, met=False)
    assert found['engine images/s end to end']['measured'] == 800.0
    assert found["engine fraction of the GPU's peak (model only)"][
        'measured'] == 0.19
    # The row left out of the rates still fails the agreement bar.
    assert found['engine agreement with eager fp32, least of any row'] == \
        dict(measured=0.98, target=0.995, met=False)
    assert found['PyTorch CRF images/s at 600 x 400']['measured'] is None
