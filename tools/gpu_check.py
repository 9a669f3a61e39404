"""Check and time every GPU path of the harness in one run: the stack,
training (with a resume and the training benchmark), tools/test.py --out,
the PyTorch CRF against pydensecrf and its search, inference in the
paper's protocol and the engine's settings, and a projection of the whole
reproduction. Writes gpu_check.json and gpu_check.md in --out; exits
non-zero when any check failed.

    python tools/gpu_check.py [--out results/gpu_check]
    python tools/gpu_check.py --device cpu --quick   # toy sizes, any machine
"""
import argparse
from pathlib import Path

from fashionseg.gpu_check.run import run_gpu_check
from fashionseg.gpu_check.steps import CheckPaths
from fashionseg.gpu_check.summary import summary_table
from fashionseg.utils.cli import run_tool
from fashionseg.utils.device import select_device


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path('results/gpu_check'))
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cuda (the default) fails at once without a '
                        'GPU; cpu runs the steps on the CPU (with --quick)')
    parser.add_argument('--quick', action='store_true',
                        help='toy sizes and the demo\'s narrow model')
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    paths = CheckPaths.of_checkout(Path(__file__).resolve().parents[1])
    record = run_gpu_check(args.out, paths, device, args.quick)
    print(summary_table(record))
    print(f'written to {args.out / "gpu_check.json"} and gpu_check.md')
    return 0 if record['passed'] else 1


if __name__ == '__main__':
    run_tool(main)
