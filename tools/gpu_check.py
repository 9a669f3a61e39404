"""Check and time every GPU path of the harness within a time budget: the
stack, the bundled photos at the paper's 600 x 400, training (with a resume
and the training benchmark), tools/test.py --out, the PyTorch CRF against
pydensecrf and its search, inference in the paper's protocol and the
engine's settings, and a projection of the whole reproduction. Each step
runs in its own process with a hard timeout; gpu_check.jsonl gets every
measurement as it is made, gpu_check.json and gpu_check.md the record.
Exits non-zero when any step did not pass.

    python tools/gpu_check.py [--out results/gpu_check] [--budget 300]
    python tools/gpu_check.py --long          # max-autotune, more iterations
    python tools/gpu_check.py --device cpu --quick   # toy sizes, any machine
"""
import argparse
from pathlib import Path

from fashionseg.gpu_check.run import DEFAULT_BUDGET, run_gpu_check
from fashionseg.gpu_check.steps import (STEP_NAMES, CheckPaths, GPUCheck,
                                        sizes_for)
from fashionseg.gpu_check.summary import summary_table
from fashionseg.utils.cli import run_tool, tool_description
from fashionseg.utils.device import select_device

REPO = Path(__file__).resolve().parents[1]


def parse_args():
    parser = argparse.ArgumentParser(
        description=tool_description(__doc__),
        epilog='Through make: make gpu-check GPU_CHECK_ARGS="--budget 600".')
    parser.add_argument('--out', type=Path, default=Path('results/gpu_check'),
                        help='folder for gpu_check.json, .md, .jsonl and the '
                        'steps\' work/ (default results/gpu_check)')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cuda (the default) fails at once without a '
                        'GPU; cpu runs the steps on the CPU (at the full '
                        'sizes unless --quick: hours)')
    parser.add_argument('--budget', type=float, default=DEFAULT_BUDGET,
                        metavar='SECONDS', help='time for all steps '
                        f'(default {DEFAULT_BUDGET:.0f}); each step gets a '
                        'share of what is left')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true',
                      help='toy sizes and the demo\'s narrow model')
    size.add_argument('--long', action='store_true',
                      help='compile=max-autotune too, more iterations, '
                      'the whole 50-trial search (give it a larger '
                      '--budget)')
    parser.add_argument('--step', choices=STEP_NAMES,
                        help='run one step in this process (what the check '
                        'itself starts for each step)')
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    paths = CheckPaths.of_checkout(REPO)
    if args.step:
        result = GPUCheck(args.out, device, sizes_for(args.quick, args.long),
                          paths).run(args.step)
        print(f'{args.step}: {result["status"]}'
              + (f': {result["error"]}' if result.get('error') else ''))
        return 0 if result['status'] == 'pass' else 1
    record = run_gpu_check(args.out, paths, device, args.quick, args.long,
                           args.budget)
    print(summary_table(record))
    print(f'written to {args.out / "gpu_check.json"} and gpu_check.md')
    return 0 if record['passed'] else 1


if __name__ == '__main__':
    run_tool(main)
