"""What a run ran on: machine, device and package versions.

Recorded beside every result so that a figure can be traced to the stack and
hardware that produced it (throughput in particular, paper section 5).
"""
import importlib.metadata
import platform
import subprocess
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
