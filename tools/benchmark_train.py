"""Is training input-bound? Compare the full training loop's images per
second with the model-only rate (one batch reused) for a config; JSON on
stdout (and --out).

    python tools/benchmark_train.py mmseg_configs/fpn_x101_ccp.py \\
        --data-root data/ccp --amp --speedups channels-last,fp32-resize
"""
import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from fashionseg.benchmarks.training import benchmark_training
from fashionseg.runner.arguments import ConfigOptionsAction
from fashionseg.runner.speedups import SPEEDUPS, parse_speedups
from fashionseg.utils.cli import (emit_json, non_negative_int, positive_int,
                                  run_tool, tool_description)
from fashionseg.utils.output_folder import (check_result_file,
                                            is_training_benchmark_file)


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('config', help='training config file')
    parser.add_argument('--iters', type=positive_int, default=50,
                        help='timed iterations (default 50)')
    parser.add_argument('--warmup', type=non_negative_int, default=10,
                        help='untimed iterations before them (default 10)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision, as tools/train.py --amp')
    parser.add_argument('--speedups', default='none', metavar='NAME[,NAME]',
                        help=f'training speed-ups: {", ".join(SPEEDUPS)} '
                        '(or none, the default)')
    parser.add_argument('--pretrained', action='store_true',
                        help='load the ImageNet weights (not needed for '
                        'speed)')
    parser.add_argument('--data-root', help='converted dataset folder to '
                        'use instead of the config\'s data_root')
    parser.add_argument('--out', type=Path, help='JSON file to write')
    parser.add_argument('--cfg-options', nargs='+',
                        action=ConfigOptionsAction)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.out is not None:
        # Before the runs, not after.
        check_result_file(args.out, 'tools/benchmark_train.py', '--out',
                          is_training_benchmark_file,
                          inputs=[args.config, args.data_root])
    # mmengine logs to stdout: to stderr here, so that stdout holds the
    # JSON alone (for a pipe into a JSON reader).
    with tempfile.TemporaryDirectory() as work_dir, \
            contextlib.redirect_stdout(sys.stderr):
        result = benchmark_training(
            args.config, work_dir, args.iters, args.warmup, args.amp,
            args.cfg_options, args.pretrained,
            parse_speedups(args.speedups), args.data_root)
    emit_json(result, args.out)


if __name__ == '__main__':
    run_tool(main)
