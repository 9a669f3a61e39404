"""What a run ran on: machine, device and package versions.

Recorded beside every result so that a figure can be traced to the stack and
hardware that produced it (throughput in particular, paper section 5).
"""
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import torch
from mmseg.utils import collect_env as collect_mmseg_env

from fashionseg.utils.device import device_name, processor_name

PACKAGES = ('torch', 'mmcv', 'mmengine', 'mmsegmentation', 'pydensecrf2',
            'numpy', 'dvc', 'dvclive', 'fashionseg')


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_packages() -> dict:
    """Every package this Python sees outside its own environment's
    folder, name to version: what the machine had before the harness was
    installed over it (``tools/wheelhouse.py install`` makes an environment
    that sees the machine's packages; a plain ``make install`` one sees
    none). ``tools/wheelhouse.py download --have`` reads it from a
    gpu-check record, so that the next wheelhouse for the machine leaves
    them out."""
    own = Path(sys.prefix).resolve()
    # The harness's own metadata, where it was installed in place.
    checkout = Path(__file__).resolve().parents[2]
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata['Name']
        try:
            location = Path(dist.locate_file('')).resolve()
        except (OSError, TypeError, ValueError):
            continue
        if name and location != checkout and \
                own not in (location, *location.parents):
            found.setdefault(name, dist.version)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def git_commit(repo: Path = Path(__file__).resolve().parents[1]) -> dict:
    """The commit the harness ran at, and whether the tree had changes."""
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo,
                                capture_output=True, text=True, check=True)
        status = subprocess.run(['git', 'status', '--porcelain'], cwd=repo,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {'commit': None, 'dirty': None}
    return {'commit': commit.stdout.strip(), 'dirty': bool(status.stdout)}


def mmcv_ops_compiled() -> bool:
    try:
        import mmcv.ops  # noqa: F401
    except ImportError:
        return False
    return True


def collect_environment() -> dict:
    """A JSON-serialisable description of this machine and stack."""
    device = {'type': 'cpu', 'name': processor_name()}
    if torch.cuda.is_available():
        device = {'type': 'cuda', 'name': device_name('cuda'),
                  'count': torch.cuda.device_count()}
    return {
        'platform': platform.platform(),
        'python': platform.python_version(),
        'cpu_threads': torch.get_num_threads(),
        'device': device,
        'packages': package_versions(),
        'mmcv_ops_compiled': mmcv_ops_compiled(),
        'git': git_commit(),
        'mmseg_collect_env': {k: str(v)
                              for k, v in collect_mmseg_env().items()},
    }
