"""Installing the harness on a GPU machine that has its own CUDA PyTorch and
no network (a cluster node, an NGC container): a wheelhouse folder written
on a networked machine for the GPU machine's Python and platform, and an
install from it that keeps the machine's torch.

``download`` resolves the project's dependencies (``pyproject.toml``, less
torch, which the GPU machine brings, and the two packages compiled there)
for the target with pip itself, pinned by ``constraints.txt``, and adds the
source archives of mmcv and pydensecrf2 and what their builds need.
``install`` makes a virtual environment over the machine's Python (whose
packages it sees after its own, so that its torch is used), installs the
wheels with pip's index off, compiles mmcv's CPU ops and pydensecrf2
against that torch in parallel, and installs the project
(docs/install.md, "A GPU machine without network").
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

from fashionseg.errors import UsageError
from fashionseg.utils.atomic_write import replace_folder

# Built on the GPU machine against its torch (mmcv 2.1.0 is published only
# as source; pydensecrf2 too).
SOURCE_PACKAGES = ('mmcv==2.1.0', 'pydensecrf2==1.1')
# What those builds import with --no-build-isolation, and setuptools with
# pkg_resources (mmengine resolves mmseg:: config references through it).
BUILD_PACKAGES = ('setuptools>=77,<81', 'wheel', 'ninja', 'cython')
# Never skipped because the machine has a package of that name: the
# harness needs this version of it.
ALWAYS_CARRIED = {'setuptools'}
# Packages that stand in for one another (mmengine asks for opencv-python;
# containers usually carry the headless build).
SAME_PACKAGE = {'opencv-python': 'opencv-python-headless',
                'opencv-python-headless': 'opencv-python'}
# What the machine brings with torch and the project must not shadow.
TORCH_PACKAGES = ('torch',)
MANIFEST = 'wheelhouse.json'
# What a wheelhouse holds: wheels and the source archives built there.
ARCHIVE_SUFFIXES = ('.whl', '.tar.gz', '.zip', '.tar.bz2', '.tgz')
STAMP = '.offline-install'
MMCV_CFLAGS = '-DNDEBUG -fwrapv -O2 -g0'


class WheelhouseError(UsageError):
    """A wheelhouse that cannot be written or installed as asked."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def project_requirements(pyproject: Path) -> List[str]:
    """``pyproject.toml``'s dependencies, less torch and the packages
    compiled on the GPU machine."""
    text = Path(pyproject).read_text()
    try:
        import tomllib
        deps = tomllib.loads(text)['project']['dependencies']
    except ImportError:  # Python 3.10: the list's quoted entries
        block = text.split('dependencies = [', 1)[1].split('\n]', 1)[0]
        deps = re.findall(r'^\s*"([^"]+)"', block, re.MULTILINE)
    skipped = {canonical(re.split(r'[<>=!~ ;\[]', s, 1)[0])
               for s in TORCH_PACKAGES + SOURCE_PACKAGES}
    return [d for d in deps
            if canonical(re.split(r'[<>=!~ ;\[]', d, 1)[0]) not in skipped]


def read_have(path: Optional[Path]) -> Set[str]:
    """Names of the packages the GPU machine already has: one a line,
    ``pip freeze`` or ``pip list`` lines, comma-separated, or the
    ``gpu_check.json`` of a check run there (its stack step's
    ``machine_packages``)."""
    if path is None:
        return set()
    if not Path(path).is_file():
        raise WheelhouseError(f'--have {path}: no such file')
    names = set()
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise WheelhouseError(f'--have {path}: not text (give the GPU '
                              'machine\'s `pip freeze` or `pip list`)'
                              ) from None
    if text.lstrip().startswith('{'):
        return {canonical(name) for name in _checked_packages(path, text)}
    for line in text.replace(',', '\n').splitlines():
        line = line.strip()
        if not line or line.startswith('#') or line.startswith('Package') \
                or line.startswith('---'):
            continue
        names.add(canonical(re.split(r'[<>=!~ @]', line, 1)[0]))
    return names


def _checked_packages(path: Path, text: str) -> dict:
    """The machine's packages in a gpu-check record (``tools/gpu_check.py``
    writes them since its stack step records them)."""
    try:
        record = json.loads(text)
        packages = record['checks']['stack']['machine_packages']
    except (ValueError, KeyError, TypeError):
        raise WheelhouseError(
            f'--have {path}: JSON, but not a gpu-check record with the '
            'machine\'s packages (checks.stack.machine_packages); give the '
            'machine\'s `pip freeze` instead') from None
    if not isinstance(packages, dict):
        raise WheelhouseError(f'--have {path}: checks.stack.'
                              'machine_packages is not a name: version map')
    return packages


def _wheel_name(filename: str) -> str:
    return canonical(filename.split('-')[0])


def _pip(python, *args, env: Optional[dict] = None,
         capture: bool = False) -> subprocess.CompletedProcess:
    """pip in ``python``; its output is shown, or kept with ``capture``
    (the caller then reads it). A failure of a shown run raises."""
    # ``python``: an interpreter, or the whole pip command as a list.
    command = ([python, '-m', 'pip'] if isinstance(python, str)
               else list(python)) + list(map(str, args))
    print('+', ' '.join(command[:6]), '...', flush=True)
    result = subprocess.run(command, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None)
    if result.returncode != 0 and not capture:
        raise WheelhouseError(f'pip failed ({" ".join(command[3:6])} ...); '
                              'its output is above')
    return result


def _pip_error(output: str) -> str:
    """pip's own error lines (its last line is often a progress bar)."""
    errors = [line for line in output.splitlines()
              if line.startswith('ERROR')]
    lines = output.strip().splitlines() or ['no output']
    return ' / '.join(errors[-3:]) or lines[-1]


def _pinned(constraints: Path, name: str) -> str:
    for line in Path(constraints).read_text().splitlines():
        if canonical(line.split('==')[0]) == canonical(name):
            return line.strip()
    return name


# Packages published only as source: pip cannot pick them for another
# platform, so a pure-Python wheel is built here first, at most this many.
MAX_SOURCE_ONLY = 10


def _resolve(python: str, dest: Path, target: List[str], repo: Path,
             requirements: List[str]) -> None:
    """``pip download`` for the target; a dependency published only as a
    source archive (pip: no matching distribution) gets a wheel built
    here, and the download is tried again."""
    built = dest / '.built'
    built.mkdir(exist_ok=True)
    constraints = repo / 'constraints.txt'
    for _ in range(MAX_SOURCE_ONLY):
        result = _pip(python, 'download', '--dest', dest, *target,
                      '--find-links', built, '-c', constraints,
                      *requirements, capture=True)
        if result.returncode == 0:
            break
        missing = re.search(r'no matching distributions available for your '
                            r'environment:\s+(\S+)', result.stdout) or \
            re.search(r'No matching distribution found for (\S+)',
                      result.stdout)
        if not missing:
            raise WheelhouseError(f'pip download failed: '
                                  f'{_pip_error(result.stdout)}')
        spec = _pinned(constraints, re.split(r'[<>=!~]', missing.group(1))[0])
        built_here = _pip(python, 'wheel', '--no-deps', '--wheel-dir', built,
                          spec, capture=True)
        if built_here.returncode != 0:
            # Not a source-only package after all: the index is out of
            # reach, or has nothing for that Python and platform.
            raise WheelhouseError(
                f'pip found no {spec} for Python '
                f'{target[target.index("--python-version") + 1]} on the '
                'platforms asked for, nor a source archive to build one '
                'from: is the package index reachable (network, '
                f'PIP_INDEX_URL)? pip: {_pip_error(built_here.stdout)}')
    else:
        raise WheelhouseError('too many dependencies published only as '
                              'source archives')
    for wheel in built.glob('*.whl'):
        if not (dest / wheel.name).exists():
            shutil.copy2(wheel, dest / wheel.name)
    shutil.rmtree(built)


def check_python_version(version: str) -> None:
    """``version`` must be a whole version (``3.12.3``): pip checks each
    package's Requires-Python against it and reads ``3.11`` as 3.11.0,
    which a pinned package may refuse (soupsieve 4.1.3 needs 3.11.5 or
    newer), and pip then backtracks until it gives up
    (resolution-too-deep)."""
    if not re.fullmatch(r'\d+\.\d+\.\d+', version):
        raise WheelhouseError(
            f'--python-version {version}: give the GPU machine\'s whole '
            'Python version, as `python3 -c "import platform; '
            'print(platform.python_version())"` prints it there (e.g. '
            '3.12.3): pip reads 3.11 as 3.11.0, and some packages need a '
            'later 3.11.x')


def download(out: Path, python_version: str, platforms: Sequence[str],
             repo: Path, have: Set[str] = frozenset(),
             python: str = sys.executable) -> dict:
    """Write the wheelhouse for ``python_version`` on ``platforms`` into
    ``out`` (replaced if it holds a wheelhouse); returns its manifest."""
    check_python_version(python_version)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WheelhouseError(f'--out {out} is a file, not a folder')
    # (Not output_folder.refuse_under_a_file: this module runs on a GPU
    # machine's bare Python before anything is installed, and that module
    # imports NumPy.)
    for place in out.parents:
        if place.exists() and not place.is_dir():
            raise WheelhouseError(f'--out {out}: {place} is a file, not a '
                                  'folder')
    if not out.parent.is_dir():
        raise WheelhouseError(f'--out {out}: its folder {out.parent} does '
                              'not exist')
    if out.exists() and any(out.iterdir()):
        # The whole folder is replaced: only a wheelhouse this command
        # wrote, holding nothing but what its manifest lists.
        try:
            manifest = _read_manifest(out)
        except WheelhouseError as error:
            raise WheelhouseError(f'--out {out}: {error}; it is left as it '
                                  'is: choose another folder') from None
        others = sorted(p.name for p in out.iterdir() if p.name not in set(
            manifest['files']) | {MANIFEST})
        if others:
            raise WheelhouseError(
                f'--out {out} holds files the wheelhouse\'s {MANIFEST} does '
                f'not list ({", ".join(others[:3])}'
                f'{" ..." if len(others) > 3 else ""}); choose another '
                'folder')
    target = ['--python-version', python_version, '--implementation', 'cp',
              '--only-binary=:all:']
    for platform in platforms:
        target += ['--platform', platform]
    tmp = Path(tempfile.mkdtemp(prefix='.wheelhouse-', dir=out.parent
                                if out.parent.exists() else None))
    try:
        _resolve(python, tmp, target, repo,
                 project_requirements(repo / 'pyproject.toml')
                 + list(BUILD_PACKAGES))
        # pip reads a source archive's metadata by running its setup:
        # mmcv's imports torch, so this runs in this environment (the
        # project's .venv) rather than an isolated one.
        _pip(python, 'download', '--dest', tmp, '--no-deps',
             '--no-binary=:all:', '--no-build-isolation', *SOURCE_PACKAGES)
        dropped = []
        for wheel in sorted(tmp.glob('*.whl')):
            name = _wheel_name(wheel.name)
            alias = SAME_PACKAGE.get(name)
            if name in ALWAYS_CARRIED or name in TORCH_PACKAGES:
                continue
            if name in have or (alias and alias in have):
                dropped.append(wheel.name)
                wheel.unlink()
        files = sorted(p.name for p in tmp.iterdir())
        manifest = dict(python_version=python_version,
                        platforms=list(platforms), files=files,
                        left_out_as_present=dropped,
                        bytes=sum(p.stat().st_size for p in tmp.iterdir()))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + '\n')
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _build_env(jobs: int, repo: Path, pch_dir: Path) -> Dict[str, str]:
    """mmcv's CPU ops only (the GPU hidden: FPN, PSPNet and FCN need none of
    its CUDA ops), without debug information, on every core, compiled by
    ``tools/mmcv-cxx`` with a header of torch's precompiled in
    ``pch_dir`` (as the Makefile's build-mmcv does)."""
    return dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='0',
                CUDA_VISIBLE_DEVICES='', MAX_JOBS=str(jobs),
                CFLAGS=MMCV_CFLAGS, CXXFLAGS=MMCV_CFLAGS,
                MMCV_REAL_CXX=os.environ.get('CXX', 'c++'),
                CXX=str(Path(repo).resolve() / 'tools' / 'mmcv-cxx'),
                MMCV_PCH_DIR=str(pch_dir))


def _torch_of(python: str) -> str:
    result = subprocess.run(
        [python, '-c', 'import torch; print(torch.__version__)'],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise WheelhouseError(
            f'{python} has no torch: install runs over the Python that '
            'holds the machine\'s CUDA PyTorch (--python)')
    return result.stdout.strip()


def _site_packages(python: str) -> List[str]:
    result = subprocess.run(
        [python, '-c', 'import json, sys; print(json.dumps('
         '[p for p in sys.path if p.endswith("-packages")]))'],
        capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _see_machine_packages(python: str, venv_python: str) -> None:
    """The new environment sees the machine Python's packages (its torch
    first of all) after its own: a ``.pth`` file naming their folders.
    (``venv --system-site-packages`` would not do where the machine's
    Python is itself a virtual environment, as in many containers: it
    reaches the base interpreter's packages, not that environment's.)"""
    prefix = subprocess.run(
        [venv_python, '-c', 'import sys; print(sys.prefix)'],
        capture_output=True, text=True, check=True).stdout.strip()
    # The environment's own folders (not those a .pth written by an
    # earlier install already added).
    own = [p for p in _site_packages(venv_python) if p.startswith(prefix)]
    machine = [p for p in _site_packages(python)
               if not p.startswith(prefix)]
    target = [p for p in own if p.endswith('site-packages')][0]
    Path(target, '_machine_packages.pth').write_text(
        ''.join(f'{p}\n' for p in machine))


def _sources(wheelhouse: Path) -> List[Path]:
    found = []
    for spec in SOURCE_PACKAGES:
        name, version = spec.split('==')
        archives = [p for p in wheelhouse.iterdir()
                    if p.suffix in ('.gz', '.zip')
                    and f'-{version}.' in p.name
                    and canonical(p.name.split(f'-{version}.')[0])
                    == canonical(name)]
        if not archives:
            raise WheelhouseError(f'{wheelhouse}: no source archive of '
                                  f'{spec}; was it written by download?')
        found.append(archives[0])
    return found


def _python_version(python: str) -> str:
    try:
        result = subprocess.run(
            [python, '-c',
             'import platform; print(platform.python_version())'],
            capture_output=True, text=True)
    except OSError as error:
        raise WheelhouseError(f'--python {python}: {error.strerror}') \
            from None
    if result.returncode != 0:
        raise WheelhouseError(f'--python {python} does not run')
    return result.stdout.strip()


def _offline_env(base: Optional[dict] = None) -> Dict[str, str]:
    """pip's environment for the offline install: no configuration file
    (global, site or user) and no ``PIP_*`` variable, so that no index or
    find-links of the machine's pip set-up is consulted: the wheelhouse
    is the only source."""
    env = {k: v for k, v in (base or os.environ).items()
           if not k.startswith('PIP_')}
    env['PIP_CONFIG_FILE'] = os.devnull
    return env


def _minor(version: str) -> str:
    return '.'.join(str(version).split('.')[:2])


def _read_manifest(wheelhouse: Path) -> dict:
    """The wheelhouse's manifest, or an error that says why it is none."""
    path = wheelhouse / MANIFEST
    if not path.is_file():
        raise WheelhouseError(f'{wheelhouse} is not a wheelhouse (no '
                              f'{MANIFEST})')
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WheelhouseError(f'{path}: not a wheelhouse manifest ({error})'
                              ) from None
    if not isinstance(manifest, dict) or not isinstance(
            manifest.get('files'), list) or not all(
                isinstance(name, str) and name.endswith(ARCHIVE_SUFFIXES)
                and '/' not in name and '\\' not in name
                and not name.startswith('.') for name in manifest['files']):
        raise WheelhouseError(f'{path}: not a wheelhouse manifest (no list '
                              'of wheel and source archive names)')
    folders = [name for name in manifest['files']
               if (wheelhouse / name).is_dir()]
    if folders:
        raise WheelhouseError(f'{path}: not a wheelhouse manifest (it lists '
                              f'the folder {folders[0]})')
    return manifest


def check_wheelhouse(wheelhouse: Path, python_version: str) -> dict:
    """The wheelhouse's manifest, once it is known to be whole and written
    for ``python_version``'s minor version (its wheels are built for it)."""
    if not (wheelhouse / MANIFEST).is_file():
        raise WheelhouseError(f'{wheelhouse} is not a wheelhouse (no '
                              f'{MANIFEST}); write one with '
                              '`tools/wheelhouse.py download` first')
    manifest = _read_manifest(wheelhouse)
    written_for = manifest.get('python_version', '')
    if _minor(written_for) != _minor(python_version):
        raise WheelhouseError(
            f'{wheelhouse} was written for Python {written_for}, and this '
            f'Python is {python_version}: write one for it (`tools/'
            f'wheelhouse.py download --python-version {python_version}`)')
    missing = [name for name in manifest.get('files', [])
               if not (wheelhouse / name).is_file()]
    if missing:
        raise WheelhouseError(
            f'{wheelhouse} lacks {len(missing)} of the files its {MANIFEST} '
            f'lists ({", ".join(missing[:3])}'
            f'{" ..." if len(missing) > 3 else ""}); copy it whole')
    return manifest


def _check_environment(venv: Path, python_version: str) -> None:
    """``venv`` is new, empty, or an environment of the same Python
    version: never a folder of other files, nor another Python's."""
    if not venv.exists():
        return
    if not venv.is_dir():
        raise WheelhouseError(f'--venv {venv} is a file')
    config = venv / 'pyvenv.cfg'
    if not config.is_file():
        if any(venv.iterdir()):
            raise WheelhouseError(
                f'--venv {venv} holds files and is not a Python '
                'environment (no pyvenv.cfg); choose a new or empty folder')
        return
    version = re.search(r'^version(?:_info)?\s*=\s*(\S+)',
                        config.read_text(), re.MULTILINE)
    if version and _minor(version.group(1)) != _minor(python_version):
        raise WheelhouseError(
            f'--venv {venv} is an environment of Python {version.group(1)}, '
            f'not of {python_version} (--python): remove it, or choose '
            'another folder')


def install(wheelhouse: Path, venv: Path, repo: Path,
            python: str = 'python3', jobs: Optional[int] = None) -> dict:
    """Install from ``wheelhouse`` into ``venv`` over ``python`` (which
    holds the machine's torch), without any package index."""
    wheelhouse, venv = Path(wheelhouse).resolve(), Path(venv).resolve()
    python_version = _python_version(python)
    check_wheelhouse(wheelhouse, python_version)
    _check_environment(venv, python_version)
    torch_version = _torch_of(python)
    venv_python = str(venv / 'bin' / 'python')
    if not Path(venv_python).exists():
        created = not venv.exists()
        was_empty = created or not any(venv.iterdir())
        made = subprocess.run([python, '-m', 'venv', str(venv)])
        if made.returncode != 0:
            # A Python without ensurepip (Debian's, say): an environment
            # without pip, which the machine's own pip installs into.
            # What venv left goes, where the folder held nothing before.
            if not was_empty:
                raise WheelhouseError(
                    f'{python} -m venv {venv} failed, over an environment '
                    'without bin/python: remove it, or choose another '
                    'folder')
            if created:
                shutil.rmtree(venv, ignore_errors=True)
            else:
                for entry in venv.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            subprocess.run([python, '-m', 'venv', '--without-pip',
                            str(venv)], check=True)
    _see_machine_packages(python, venv_python)
    has_pip = subprocess.run([venv_python, '-m', 'pip', '--version'],
                             capture_output=True).returncode == 0
    pip = venv_python if has_pip else [python, '-m', 'pip', '--python',
                                       venv_python]
    offline = ['--no-index', '--find-links', wheelhouse, '--no-deps',
               '--disable-pip-version-check']
    _pip(pip, 'install', *offline, *sorted(wheelhouse.glob('*.whl')),
         env=_offline_env())
    jobs = jobs or os.cpu_count() or 1
    sources = _sources(wheelhouse)
    with tempfile.TemporaryDirectory(prefix='mmcv-pch-') as pch_dir, \
            ThreadPoolExecutor(len(sources)) as pool:
        env = _offline_env(_build_env(jobs, repo, Path(pch_dir)))
        # Built anew, not taken from pip's cache: a wheel built there
        # against another torch (or none) would install without ops.
        list(pool.map(lambda s: _pip(pip, 'install', *offline,
                                     '--no-build-isolation', '--no-cache-dir',
                                     '--force-reinstall', s, env=env),
                      sources))
    _pip(pip, 'install', *offline, '--no-build-isolation', '-e', repo,
         env=_offline_env())
    check = subprocess.run(
        [venv_python, '-c', 'import torch, mmcv._ext, mmseg, pydensecrf.'
         'densecrf, dvc.repo, dvclive, fashionseg.mmseg_modules, '
         'custom_datasets.mmseg_datasets; print(torch.__version__, '
         'torch.cuda.is_available())'], capture_output=True, text=True,
        cwd=repo)
    if check.returncode != 0:
        raise WheelhouseError('the installed harness does not import: '
                              + check.stderr.strip().splitlines()[-1])
    used = check.stdout.split()[0]
    if used != torch_version:
        raise WheelhouseError(f'{venv} uses torch {used}, not the '
                              f'machine\'s {torch_version}')
    record = dict(wheelhouse=str(wheelhouse), python=python, torch=used,
                  cuda_available=check.stdout.split()[1] == 'True')
    (venv / STAMP).write_text(json.dumps(record, indent=2) + '\n')
    return record
