"""Install the harness on a GPU machine with its own CUDA PyTorch and no
network: write a wheelhouse on a networked machine, carry it over, install
from it there (docs/install.md, "A GPU machine without network").

    python tools/wheelhouse.py download --out wheelhouse \\
        [--python-version 3.12.3] [--have gpu_packages.txt]
    python3 tools/wheelhouse.py install --from wheelhouse [--venv .venv]
"""
import argparse
import json
import sys
from pathlib import Path

# It runs before the project is installed (on the GPU machine): the
# checkout's package is taken from beside this file.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fashionseg.utils.cli import run_tool, tool_description  # noqa: E402
from fashionseg.utils.wheelhouse import (download, install,  # noqa: E402
                                         read_have)

PLATFORMS = ['manylinux_2_28_x86_64', 'manylinux_2_27_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
             'manylinux1_x86_64', 'any']


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    commands = parser.add_subparsers(dest='command', required=True)
    get = commands.add_parser('download', help='on a networked machine')
    get.add_argument('--out', type=Path, required=True,
                     help='the wheelhouse folder to write (new, or one '
                     'written before)')
    get.add_argument('--python-version', default='3.12.3',
                     help="the GPU machine's whole Python version (default "
                     "3.12.3, this project's lent H200 machines')")
    get.add_argument('--platform', action='append', dest='platforms',
                     help='pip platform tags of the GPU machine (default: '
                     'manylinux x86_64)')
    get.add_argument('--have', type=Path, help='packages the GPU machine '
                     'already has (its `pip freeze` or `pip list`, one '
                     'name a line, or the gpu_check.json of a check run '
                     'there): left out')
    put = commands.add_parser('install', help='on the GPU machine')
    put.add_argument('--from', dest='wheelhouse', type=Path, required=True,
                     help='the wheelhouse folder download wrote')
    put.add_argument('--venv', type=Path, default=REPO / '.venv',
                     help='the environment to make (new, empty, or one '
                     'made before by the same Python; default .venv)')
    put.add_argument('--python', default='python3',
                     help='the Python that holds the machine\'s torch')
    put.add_argument('--jobs', type=int, help='compile jobs (all cores)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.command == 'download':
        manifest = download(args.out, args.python_version,
                            args.platforms or PLATFORMS, REPO,
                            read_have(args.have))
        print(f'{len(manifest["files"])} files, '
              f'{manifest["bytes"] / 2**20:.1f} MiB in {args.out}'
              + (f'; {len(manifest["left_out_as_present"])} left out as '
                 'already on the GPU machine'
                 if manifest['left_out_as_present'] else ''))
    else:
        record = install(args.wheelhouse, args.venv, REPO, args.python,
                         args.jobs)
        print(json.dumps(record, indent=2))


if __name__ == '__main__':
    run_tool(main)
