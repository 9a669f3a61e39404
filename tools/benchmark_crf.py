"""Benchmark the dense-CRF backends.

    # images per second at 600 x 400, 23 classes, 10 iterations
    python tools/benchmark_crf.py speed [--backend pydensecrf torch] \\
        [--device cpu|cuda] [--batch-sizes 1 8 32] [--out FILE]
    # labels of the torch backend against pydensecrf's on real images
    python tools/benchmark_crf.py agreement --scores DIR --data DIR \\
        [--split test] [--images 50] [--param-sets 10] [--out FILE]
"""
import argparse
from pathlib import Path

from fashionseg.benchmarks.crf import agreement, run_benchmark
from fashionseg.crf.items import split_items
from fashionseg.crf.search import sample_params
from fashionseg.utils.cli import (emit_json, positive_int, run_tool, seed_int,
                                  tool_description)
from fashionseg.utils.device import select_device
from fashionseg.utils.output_folder import (check_result_file,
                                            is_crf_benchmark_file)


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    commands = parser.add_subparsers(dest='command', required=True)
    speed = commands.add_parser('speed')
    speed.add_argument('--photo', type=Path,
                       help='a photo to use (resized to 600 x 400)')
    speed.add_argument('--images', type=positive_int, default=8)
    speed.add_argument('--backend', nargs='+', default=['pydensecrf',
                                                        'torch'],
                       choices=['pydensecrf', 'torch'])
    speed.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    speed.add_argument('--batch-sizes', type=positive_int, nargs='+',
                       default=[1])
    match = commands.add_parser('agreement')
    match.add_argument('--scores', type=Path, required=True,
                       help='class scores from tools/test.py --out')
    match.add_argument('--data', type=Path, required=True)
    match.add_argument('--split', default='test')
    match.add_argument('--images', type=positive_int, default=50)
    match.add_argument('--param-sets', type=positive_int, default=10,
                       help='drawn from the paper\'s ranges')
    match.add_argument('--seed', type=seed_int, default=0)
    match.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    match.add_argument('--batch-size', type=positive_int, default=8)
    for sub in (speed, match):
        sub.add_argument('--out', type=Path, help='JSON file to write')
    return parser.parse_args()


def main():
    args = parse_args()
    select_device(args.device)
    if args.out is not None:
        # Before the timing, not after.
        check_result_file(args.out, 'tools/benchmark_crf.py', '--out',
                          is_crf_benchmark_file,
                          inputs=[getattr(args, 'scores', None),
                                  getattr(args, 'data', None),
                                  getattr(args, 'photo', None)])
    if args.command == 'speed':
        record = run_benchmark(args.photo, args.images, args.backend,
                               args.device, args.batch_sizes)
    else:
        items, classes = split_items(args.scores, args.data, args.split)
        record = agreement(items[:args.images], classes,
                           sample_params(args.param_sets, args.seed),
                           args.device, args.batch_size)
        record.update(scores=str(args.scores), split=args.split)
    emit_json(record, args.out)


if __name__ == '__main__':
    run_tool(main)
