"""The pipeline's stages side by side (tools/grid.py, `make repro JOBS=N`,
`make demo JOBS=2`), on a small DVC project of its own: stages run in
parallel, dvc.lock ends as `dvc repro` leaves it, a failed job is named
with its log while the rest go on, and a rerun submits only what is
missing; and the SLURM jobs ask for the resources in params.yaml."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fashionseg.errors import UsageError
from fashionseg.pipeline.grid import (Grid, GridSettings, Pipeline, grid_hours,
                                      slurm_parameters)

BIN = Path(sys.executable).parent
STEP = '''\
import pathlib, sys, time
kind, seed = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ''
root = pathlib.Path('.')
if kind == 'prep':
    (root / 'data.txt').write_text('data\\n')
elif kind == 'train':
    running = root / 'running'
    running.mkdir(exist_ok=True)
    (running / seed).touch()
    if (root / f'fail-{seed}').exists():
        (running / seed).unlink()
        sys.exit(f'seed {seed} told to fail')
    # Seeds 0 and 1 meet: each finishes only once the other has started,
    # which needs the two to run at the same time.
    if seed in ('0', '1'):
        marks = root / 'marks'
        marks.mkdir(exist_ok=True)
        (marks / seed).touch()
        other = marks / ('1' if seed == '0' else '0')
        deadline = time.time() + 60
        while not other.exists():
            if time.time() > deadline:
                sys.exit(f'seed {seed} ran alone')
            time.sleep(0.2)
    out = root / 'out'
    out.mkdir(exist_ok=True)
    data = (root / 'data.txt').read_text()
    (out / f'seed{seed}.txt').write_text(data + seed + '\\n')
    (running / seed).unlink()
elif kind == 'bench':
    # A stage that runs alone: no training beside it.
    beside = sorted(p.name for p in (root / 'running').glob('*'))
    if beside:
        sys.exit(f'bench ran beside {beside}')
    (root / 'bench.txt').write_text('timed\\n')
elif kind == 'report':
    parts = sorted(p.read_text() for p in (root / 'out').glob('*.txt'))
    (root / 'report.txt').write_text(''.join(parts))
'''
DVC_YAML = {
    'stages': {
        'prep': {'cmd': f'{sys.executable} step.py prep',
                 'deps': ['step.py'], 'outs': ['data.txt']},
        'train': {
            'matrix': {'seed': [0, 1, 2, 3]},
            'cmd': f'{sys.executable} step.py train ${{item.seed}}',
            'deps': ['step.py', 'data.txt'],
            'params': ['lr'],
            'outs': [{'out/seed${item.seed}.txt': {'cache': False}}]},
        'bench': {'cmd': f'{sys.executable} step.py bench',
                  'deps': ['step.py', 'data.txt'],
                  'outs': [{'bench.txt': {'cache': False}}]},
        'report': {'cmd': f'{sys.executable} step.py report',
                   'deps': ['step.py', 'out', 'bench.txt'],
                   'outs': [{'report.txt': {'cache': False}}]},
    }}


def _project(path: Path) -> Path:
    path.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t')
    (path / 'step.py').write_text(STEP)
    (path / 'dvc.yaml').write_text(yaml.safe_dump(DVC_YAML))
    (path / 'params.yaml').write_text(yaml.safe_dump(
        {'lr': 0.1, 'grid': {'executor': 'local', 'alone': ['bench'],
                             'logs': 'logs'}}))
    (path / '.gitignore').write_text('marks/\nrunning/\nlogs/\nfail-*\n')
    for command in (['git', 'init', '-q'], [str(BIN / 'dvc'), 'init', '-q'],
                    ['git', 'add', '-A'],
                    ['git', 'commit', '-q', '-m', 'project']):
        subprocess.run(command, cwd=path, check=True, env=env)
    return path


def _grid(project: Path, *args):
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'grid.py'), 'report', *args],
        cwd=project, capture_output=True, text=True, timeout=600)


def _dvc(project: Path, *args):
    return subprocess.run([str(BIN / 'dvc'), *args], cwd=project,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_grid_runs_side_by_side_and_leaves_dvc_s_record(tmp_path):
    project = _project(tmp_path / 'grid')
    (project / 'fail-2').touch()
    first = _grid(project, '--jobs', '2')
    # The failed job is named with its log; the others went on; the
    # report, which needs it, waited.
    assert first.returncode == 1, first.stdout + first.stderr
    # bench, ready as soon as prep is done, waited for the trainings (it
    # runs alone) and then ran.
    assert '5 stage(s) ran, 0 unchanged, 1 failed, 1 not run' in \
        first.stdout, first.stdout
    failed = [line for line in first.stdout.splitlines()
              if line.startswith('failed: train@2; log: ')]
    assert len(failed) == 1, first.stdout
    log = Path(failed[0].split('log: ')[1])
    assert log.is_relative_to(project / 'logs' / 'train@2')
    assert 'seed 2 told to fail' in log.read_text()
    # The progress line says why, in the stage's own words.
    assert any(' FAILED train@2 ' in line and 'seed 2 told to fail' in line
               for line in first.stdout.splitlines()), first.stdout
    assert 'not run (something upstream failed): report' in first.stdout
    for seed in (0, 1, 3):
        assert (project / 'out' / f'seed{seed}.txt').exists()

    # The rerun submits only what is missing.
    (project / 'fail-2').unlink()
    second = _grid(project, '--jobs', '2')
    assert second.returncode == 0, second.stdout + second.stderr
    started = sorted(line.split()[2] for line in second.stdout.splitlines()
                     if ' started ' in line)
    assert started == ['report', 'train@2'], second.stdout
    assert '2 stage(s) ran, 5 unchanged, 0 failed, 0 not run' in \
        second.stdout
    assert 'dvc status: the stages are up to date' in second.stdout

    # DVC agrees: nothing to do, and `dvc repro` runs nothing.
    status = _dvc(project, 'status')
    assert 'Data and pipelines are up to date' in status.stdout, \
        status.stdout + status.stderr
    repro = _dvc(project, 'repro', 'report')
    assert repro.returncode == 0 and 'Running stage' not in repro.stdout, \
        repro.stdout

    # dvc.lock is what a serial `dvc repro` writes.
    serial = _project(tmp_path / 'serial')
    (serial / 'marks').mkdir()
    for seed in '01':  # the meeting needs no partner when run alone
        (serial / 'marks' / seed).touch()
    result = _dvc(serial, 'repro', 'report')
    assert result.returncode == 0, result.stdout + result.stderr
    grid_lock = yaml.safe_load((project / 'dvc.lock').read_text())
    serial_lock = yaml.safe_load((serial / 'dvc.lock').read_text())
    assert grid_lock == serial_lock

    # A parameter change reruns the training stages, side by side again;
    # their outputs come out the same, so the report's inputs did not
    # change and it is not resubmitted (as `dvc repro` would not run it).
    params = yaml.safe_load((project / 'params.yaml').read_text())
    params['lr'] = 0.2
    (project / 'params.yaml').write_text(yaml.safe_dump(params))
    shutil.rmtree(project / 'marks')
    third = _grid(project, '--jobs', '2')
    assert third.returncode == 0, third.stdout + third.stderr
    assert '4 stage(s) ran, 3 unchanged' in third.stdout, third.stdout
    assert ' started report' not in third.stdout


def test_slurm_jobs_ask_for_the_resources_in_params(tmp_path):
    """The job script submitit would submit for each stage (its own
    script writer, as SlurmExecutor calls it; no cluster needed)."""
    from submitit.slurm.slurm import _make_sbatch_string
    grid = yaml.safe_load((REPO / 'params.yaml').read_text())['grid']
    slurm = dict(grid['slurm'], partition='gpu', account='proj',
                 time_min=90)
    script = _make_sbatch_string(
        command='python -m submitit', folder=tmp_path,
        job_name='train@cfpd-fpn_x101-0', **slurm_parameters(slurm))
    for line in ('#SBATCH --partition=gpu', '#SBATCH --account=proj',
                 '#SBATCH --time=90', '#SBATCH --gpus-per-node=1',
                 '#SBATCH --cpus-per-task=8', '#SBATCH --mem=64GB',
                 '#SBATCH --ntasks-per-node=1',
                 '#SBATCH --job-name=train@cfpd-fpn_x101-0',
                 # requeued before the limit or a preemption
                 '#SBATCH --signal=USR2@120'):
        assert line in script, line
    bare = _make_sbatch_string(command='x', folder=tmp_path,
                               **slurm_parameters(dict(grid['slurm'])))
    assert 'account' not in bare and 'partition' not in bare
    with pytest.raises(UsageError, match='time_min'):
        slurm_parameters(dict(grid['slurm'], time_min=None))
    with pytest.raises(UsageError, match="no setting 'gpus'"):
        slurm_parameters(dict(grid['slurm'], gpus=2))


def test_slurm_jobs_of_a_stage_that_runs_alone_or_needs_no_gpu(tmp_path):
    project = _project(tmp_path / 'p')
    settings = GridSettings(executor='slurm', alone=['bench'], slurm=dict(
        time_min=60, gpus_per_job=1, cpus_per_job=4, cpu_stages=['report']))
    grid = Grid(Pipeline(project, ['report']), settings, lambda line: None)
    assert grid.slurm_job('train@0')['gpus_per_node'] == 1
    assert 'exclusive' not in grid.slurm_job('train@0')
    assert grid.slurm_job('bench')['exclusive'] is True
    assert 'gpus_per_node' not in grid.slurm_job('report')


def test_grid_hours_share_the_runs_out_longest_first():
    assert grid_hours([2.0] * 24, 1) == 48
    assert grid_hours([2.0] * 24, 8) == 6
    assert grid_hours([5, 1, 1], 3) == 5  # never below the longest run
    assert grid_hours([3, 3, 2, 2, 2], 2) == 7  # greedy: 3+2+2, 3+2


def test_a_params_file_the_grid_cannot_use_is_one_error_line(tmp_path):
    """Before anything runs: a missing or malformed params file, a grid
    section of the wrong kind, and a misspelt SLURM setting under the
    local executor (it was ignored, and the whole grid started)."""
    params = tmp_path / 'params.yaml'
    for text, why in ((None, 'cannot be read'),
                      ('grid: [1, 2]\n', 'grid must be a mapping'),
                      ('- a list\n', 'no keys at its top level'),
                      ('grid: {jobs: \n', 'not YAML'),
                      ('grid: {slurm: 5}\n', 'grid.slurm must be a mapping'),
                      ('grid: {slurm: {partitionn: gpu}}\n',
                       "grid.slurm has no setting 'partitionn'"),
                      ('grid: {alone: bench}\n', 'grid.alone must be a list')):
        if text is not None:
            params.write_text(text)
        result = subprocess.run(
            [sys.executable, str(REPO / 'tools' / 'grid.py'), 'report',
             '--params', str(params)], cwd=tmp_path, capture_output=True,
            text=True, timeout=120)
        assert result.returncode == 2, (text, result.stderr[-2000:])
        assert 'Traceback' not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('error: ') and why in last, (text, last)


def test_a_failed_stage_is_reported_with_its_tools_own_words(tmp_path):
    from fashionseg.pipeline.grid import failure_reason
    log = tmp_path / 'job_log.err'
    job_error = RuntimeError('submitit traceback\n  /x/y_log.out')
    log.write_text('$ python -m dvc repro --single-item train@0\n'
                   'Running stage train@0:\n'
                   'error: config mmseg_configs/nosuch.py does not exist\n'
                   "ERROR: failed to reproduce 'train@0': failed to run: "
                   'python tools/train.py, exited with 2\n'
                   'Traceback (most recent call last):\n  ...\n'
                   'RuntimeError: stage train@0 failed\n')
    assert failure_reason(log, job_error) == \
        'config mmseg_configs/nosuch.py does not exist'
    log.write_text('Running stage train@0:\nTraceback (most recent call '
                   'last):\n  File "x.py", line 1\nValueError: Seed must be '
                   "between 0 and 2**32 - 1\nERROR: failed to reproduce "
                   "'train@0': failed to run: python x.py, exited with 1\n")
    assert failure_reason(log, job_error) == \
        'ValueError: Seed must be between 0 and 2**32 - 1'
    assert failure_reason(tmp_path / 'none.err', job_error).strip() == \
        '/x/y_log.out'
