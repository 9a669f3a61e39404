"""The offline demo pipeline (`make demo`) in a clone of the project, run
once per test session and shared by the test files that read it, and by
pytest-xdist's workers: the first to need it builds it under a file lock,
the others wait for it and reuse it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from filelock import FileLock

BIN = Path(sys.executable).parent
DVC = [str(BIN / 'dvc')]  # as the README runs it
DEMO = yaml.safe_load((REPO / 'params.yaml').read_text())['demo']
# The demo configs checkpoint and validate every 5 epochs; the quick
# clone's every QUICK_INTERVAL, for QUICK_EPOCHS: past the first
# checkpoint and validation, with as many epochs left in which a run can
# be stopped after that checkpoint, then resumed.
QUICK_INTERVAL = 2
QUICK_EPOCHS = 2 * QUICK_INTERVAL
# The demo's photos at half its size (256 px): a quarter of the pixels
# in every stage that computes on them.
QUICK_MAX_SIZE = 128
# The demo's benchmark times 20 batches per engine setting (about 45 s of
# a 3-minute demo here); the tests check that it runs and what it
# records, not the rates.
QUICK_BENCHMARK_BATCHES = 2
SERIAL_TABLES = 'demo_serial_tables.json'


def copy_checkout(dst: Path) -> None:
    """The working tree as a fresh clone would have it: tracked and new
    files that git does not ignore, committed in a new repository."""
    files = subprocess.run(
        ['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO,
        capture_output=True, check=True).stdout.decode().split('\0')
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@t')
    for command in (['git', 'init', '-q'], ['git', 'add', '-A'],
                    ['git', 'commit', '-q', '-m', 'clone']):
        subprocess.run(command, cwd=dst, check=True, env=env)


def path_without_the_venv() -> str:
    """The caller's PATH without any Python environment's bin folder, as a
    user's shell may have it: the pipeline must not depend on which
    `python` comes first (tools/python picks dvc's own)."""
    venvs = {str(BIN.resolve()), os.environ.get('VIRTUAL_ENV', '') + '/bin'}
    return os.pathsep.join(
        entry for entry in os.environ['PATH'].split(os.pathsep)
        if entry and str(Path(entry).resolve()) not in venvs
        and not (Path(entry) / 'activate').exists())


def user_env() -> dict:
    return dict(os.environ, PATH=path_without_the_venv(),
                PYTHONWARNINGS='ignore')


def run_quiet(args, cwd, timeout=900):
    """``args`` in ``cwd`` from a user's shell (:func:`user_env`), its
    output captured."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=user_env())


def quick_clone(clone: Path) -> Path:
    """A clone of the project whose demo trains for QUICK_EPOCHS
    (checkpointed and validated every QUICK_INTERVAL) on its photos at
    QUICK_MAX_SIZE and times each engine setting over
    QUICK_BENCHMARK_BATCHES: every stage runs for real, on less work."""
    copy_checkout(clone)
    for model in DEMO['models']:
        for dataset in DEMO['datasets']:
            config = clone / DEMO['configs'] / f'{model}_{dataset}.py'
            with config.open('a') as f:  # the last assignment wins
                f.write(f'\ntrain_cfg = dict(val_interval={QUICK_INTERVAL})'
                        '\ndefault_hooks = dict(checkpoint=dict('
                        f'interval={QUICK_INTERVAL}))\n')
    params = yaml.safe_load((clone / 'params.yaml').read_text())
    params['demo']['train']['epochs'] = QUICK_EPOCHS
    params['demo']['max_size'] = QUICK_MAX_SIZE
    params['demo']['benchmark']['batches'] = QUICK_BENCHMARK_BATCHES
    (clone / 'params.yaml').write_text(yaml.safe_dump(params))
    return clone


def _shared_folder(tmp_path_factory) -> Path:
    """The session's temporary folder, the one all xdist workers share."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get('PYTEST_XDIST_WORKER') else root


@pytest.fixture(scope='session')
def demo_clone(tmp_path_factory):
    """A clone of the project after `dvc repro demo-report` (what
    `make demo` runs); its tables as that run wrote them are
    :func:`serial_demo_tables`, whatever a test changes in the clone."""
    shared = _shared_folder(tmp_path_factory)
    clone, done = shared / 'demo_clone', shared / 'demo_clone.done'
    with FileLock(str(shared / 'demo_clone.lock')):
        if not done.exists():
            if clone.exists():  # a build that failed
                shutil.rmtree(clone)
            clone.mkdir()
            quick_clone(clone)
            result = run_quiet(DVC + ['repro', 'demo-report'], clone)
            assert result.returncode == 0, (result.stdout[-4000:] +
                                            result.stderr[-4000:])
            shutil.copy(clone / DEMO['results'] / 'tables.json',
                        shared / SERIAL_TABLES)
            done.touch()
    return clone


def serial_demo_tables(clone: Path) -> dict:
    """``tables.json`` as the serial `dvc repro` of ``clone`` (a
    :func:`demo_clone`) wrote it."""
    return json.loads((clone.parent / SERIAL_TABLES).read_text())
