"""The offline install's parts that run without a network: what a
wheelhouse holds and leaves out, an environment that sees the machine's
own torch although that Python is itself a virtual environment, and the
one-line errors. (Writing a wheelhouse needs the package index; the whole
install was run by hand: docs/install.md, "A GPU machine without
network".)"""
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from fashionseg.utils import wheelhouse


def test_requirements_leave_out_torch_and_the_packages_built_there():
    requirements = wheelhouse.project_requirements(REPO / 'pyproject.toml')
    names = {wheelhouse.canonical(r.split('=')[0].split('<')[0]
                                  .split('>')[0]) for r in requirements}
    assert {'torch', 'mmcv', 'pydensecrf2'}.isdisjoint(names)
    assert {'mmengine', 'mmsegmentation', 'dvc', 'dvclive'} <= names


def test_the_machines_packages_are_read_from_freeze_list_or_names(tmp_path):
    have = tmp_path / 'have.txt'
    have.write_text('Package Version\n------- -------\nNumPy 2.5.2\n'
                    'opencv_python_headless==4.11\nfsspec @ file:///x\n'
                    'cython, torch\n# a comment\n')
    assert wheelhouse.read_have(have) == {
        'numpy', 'opencv-python-headless', 'fsspec', 'cython', 'torch'}
    assert wheelhouse.read_have(None) == set()


def test_the_machines_packages_are_read_from_a_gpu_check_record(tmp_path):
    """The check's stack step records what the machine had besides the
    harness's environment; the next wheelhouse for it reads that."""
    from fashionseg.utils.environment import machine_packages
    record = tmp_path / 'gpu_check.json'
    record.write_text(json.dumps(dict(checks=dict(stack=dict(
        status='pass', machine_packages={'NumPy': '2.5.2',
                                         'opencv_python_headless': '4.11'
                                         })))))
    assert wheelhouse.read_have(record) == {'numpy',
                                            'opencv-python-headless'}
    record.write_text(json.dumps(dict(checks=dict(stack={}))))
    with pytest.raises(wheelhouse.WheelhouseError, match=f'--have {record}: '
                       'JSON, but not a gpu-check record'):
        wheelhouse.read_have(record)
    # The project's .venv (a plain install) sees nothing of the machine's
    # but what it was made to see: none of its own packages count.
    assert not {'mmengine', 'mmsegmentation', 'fashionseg'} & {
        wheelhouse.canonical(name) for name in machine_packages()}


def test_a_new_environment_sees_the_machines_torch_after_its_own(tmp_path):
    """The machine's Python here is the project's .venv: a virtual
    environment, as in many GPU containers, whose packages `venv
    --system-site-packages` would not reach."""
    env = tmp_path / 'env'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env)],
                   check=True)
    python = str(env / 'bin' / 'python')
    probe = [python, '-c', 'import torch; print(torch.__file__)']
    assert subprocess.run(probe, capture_output=True).returncode != 0
    wheelhouse._see_machine_packages(sys.executable, python)
    found = subprocess.run(probe, capture_output=True, text=True, check=True)
    import torch
    assert found.stdout.strip() == torch.__file__
    # Its own folder comes first: a package installed there wins.
    paths = subprocess.run(
        [python, '-c', 'import sys; print(sys.path)'], capture_output=True,
        text=True, check=True).stdout
    assert paths.index(str(env)) < paths.index(torch.__file__.split(
        '/torch/')[0])
    # What the gpu-check records there as the machine's: its torch.
    packages = json.loads(subprocess.run(
        [python, '-c', 'import json, sys; sys.path.insert(0, sys.argv[1]); '
         'from fashionseg.utils.environment import machine_packages; '
         'print(json.dumps(machine_packages()))', str(REPO)],
        capture_output=True, text=True, check=True).stdout)
    assert packages['torch'] == torch.__version__


def _tool(*args):
    return subprocess.run([sys.executable, 'tools/wheelhouse.py', *args],
                          cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_install_from_a_folder_that_is_no_wheelhouse_is_one_error(tmp_path):
    result = _tool('install', '--from', str(tmp_path), '--venv',
                   str(tmp_path / 'env'))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: {tmp_path} is not a wheelhouse (no wheelhouse.json); write '
        'one with `tools/wheelhouse.py download` first']
    assert not (tmp_path / 'env').exists()


def test_download_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / 'mine.txt').write_text('keep me')
    result = _tool('download', '--out', str(tmp_path))
    assert result.returncode == 2
    assert 'is not a wheelhouse' in result.stderr
    assert (tmp_path / 'mine.txt').read_text() == 'keep me'


@pytest.mark.parametrize('manifest', [
    '{"files": [', '[1, 2]', '{"files": ["notes.txt"]}',
    '{"files": ["../x.whl"]}', None])
def test_a_wheelhouse_with_a_damaged_manifest_or_other_files_is_left_alone(
        tmp_path, manifest):
    """``download`` replaces only a wheelhouse holding what its manifest
    lists (here a user's notes beside it, or a damaged manifest, are kept),
    and ``install`` says what is wrong with a damaged manifest."""
    house = _wheelhouse(tmp_path, '3.12.3')
    (house / 'notes.txt').write_text('keep me')
    if manifest is not None:
        (house / wheelhouse.MANIFEST).write_text(manifest)
    before = {p.name: p.read_bytes() for p in house.iterdir()}
    result = _tool('download', '--out', str(house))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: --out {house}')
    assert ('not a wheelhouse manifest' if manifest else
            'holds files the wheelhouse\'s wheelhouse.json does not list '
            '(notes.txt)') in last
    assert {p.name: p.read_bytes() for p in house.iterdir()} == before
    if manifest is not None:
        result = _tool('install', '--from', str(house), '--venv',
                       str(tmp_path / 'env'))
        assert result.returncode == 2 and 'Traceback' not in result.stderr
        assert 'not a wheelhouse manifest' in result.stderr
        assert not (tmp_path / 'env').exists()


def test_download_asks_for_the_whole_python_version(tmp_path):
    """pip reads 3.11 as 3.11.0, which a pinned package refuses
    (soupsieve 4.1.3: 3.11.5 or newer), and then backtracks for minutes
    before giving up: the tool asks for the whole version at once."""
    for version in ('3.11', '3', '3.12.x'):
        result = _tool('download', '--out', str(tmp_path / 'wh'),
                       '--python-version', version)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f'error: --python-version {version}: give the GPU machine\'s '
            'whole Python version, as `python3 -c "import platform; '
            'print(platform.python_version())"` prints it there (e.g. '
            '3.12.3): pip reads 3.11 as 3.11.0, and some packages need a '
            'later 3.11.x']
        assert not (tmp_path / 'wh').exists()


def _wheelhouse(root, python_version, listed=('a-1.0-py3-none-any.whl',),
                present=None):
    """A wheelhouse folder: its manifest and (``present``) its files."""
    house = root / 'house'
    house.mkdir()
    for name in listed if present is None else present:
        (house / name).write_bytes(b'')
    (house / wheelhouse.MANIFEST).write_text(json.dumps(dict(
        python_version=python_version, files=list(listed))))
    return house


def test_install_refuses_another_pythons_or_an_incomplete_wheelhouse(
        tmp_path):
    """Before anything is made: the wheels are built for one Python."""
    other = '3.9.1' if sys.version_info[:2] != (3, 9) else '3.10.1'
    house = _wheelhouse(tmp_path, other)
    with pytest.raises(wheelhouse.WheelhouseError,
                       match=f'written for Python {other}, and this Python '
                       f'is {platform.python_version()}'):
        wheelhouse.install(house, tmp_path / 'env', REPO, sys.executable)
    assert not (tmp_path / 'env').exists()
    shutil.rmtree(house)
    house = _wheelhouse(tmp_path, platform.python_version(),
                        listed=['a-1.0-py3-none-any.whl', 'b-2.0.tar.gz'],
                        present=['a-1.0-py3-none-any.whl'])
    with pytest.raises(wheelhouse.WheelhouseError,
                       match=r'lacks 1 of the files .*\(b-2.0.tar.gz\)'):
        wheelhouse.install(house, tmp_path / 'env', REPO, sys.executable)
    assert not (tmp_path / 'env').exists()


def test_install_leaves_a_folder_of_other_files_or_another_python_alone(
        tmp_path):
    house = _wheelhouse(tmp_path, platform.python_version())
    mine = tmp_path / 'mine'
    (mine / 'docs').mkdir(parents=True)
    (mine / 'docs' / 'thesis.tex').write_text('x')
    with pytest.raises(wheelhouse.WheelhouseError,
                       match='holds files and is not a Python environment'):
        wheelhouse.install(house, mine, REPO, sys.executable)
    assert (mine / 'docs' / 'thesis.tex').read_text() == 'x'
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'pyvenv.cfg').write_text('home = /usr/bin\nversion = 3.1.4\n')
    with pytest.raises(wheelhouse.WheelhouseError,
                       match='an environment of Python 3.1.4, not of'):
        wheelhouse.install(house, other, REPO, sys.executable)
    assert sorted(p.name for p in other.iterdir()) == ['pyvenv.cfg']


def test_the_offline_install_reads_no_pip_configuration(tmp_path):
    """pip's find-links and indexes from the machine's set-up (a config
    file, PIP_* variables) are not consulted; a --python that is not there
    is one error."""
    env = wheelhouse._offline_env({'PIP_FIND_LINKS': '/opt/wheels',
                                   'PIP_INDEX_URL': 'http://mirror',
                                   'PATH': '/usr/bin'})
    assert env == {'PATH': '/usr/bin', 'PIP_CONFIG_FILE': os.devnull}
    house = _wheelhouse(tmp_path, platform.python_version())
    with pytest.raises(wheelhouse.WheelhouseError,
                       match='--python /no/such/python: No such file'):
        wheelhouse.install(house, tmp_path / 'env', REPO, '/no/such/python')
