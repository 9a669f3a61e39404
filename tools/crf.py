"""Dense-CRF post-processing: the paper's parameter search and its
application to a split.

    python tools/crf.py search --scores DIR --data DATASET_DIR --split val \\
        --trials 50 --seed 0 --out FILE
    python tools/crf.py apply --scores DIR --data DATASET_DIR --split test \\
        --params FILE --out DIR
"""
import argparse
from pathlib import Path

from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.search import (apply, check_search_out,  # noqa
                                   read_best_params, search, write_search)
from fashionseg.utils.cli import (add_max_images_argument, positive_int,
                                  run_tool, seed_int, tool_description)


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    commands = parser.add_subparsers(dest='command', required=True)
    for name in ('search', 'apply'):
        sub = commands.add_parser(name)
        sub.add_argument('--scores', type=Path, required=True,
                         help='folder of STEM.npz from tools/test.py --out')
        sub.add_argument('--data', type=Path, required=True,
                         help='dataset folder from tools/convert_data.py')
        sub.add_argument('--split', default='val' if name == 'search'
                         else 'test')
        sub.add_argument('--out', type=Path, required=True,
                         help='JSON file (search) or folder (apply)')
        sub.add_argument('--workers', type=positive_int,
                         help='pydensecrf processes (default: all cores)')
        sub.add_argument('--backend', default='auto',
                         choices=['auto', 'pydensecrf', 'torch'],
                         help='pydensecrf, or the batched PyTorch CRF '
                         '(same model); auto: torch when there is a GPU')
        sub.add_argument('--device', choices=['cpu', 'cuda'],
                         help='for the torch backend (default: cuda when '
                         'there is a GPU)')
        sub.add_argument('--batch-size', type=positive_int,
                         help='images per torch-backend call (default: 16 '
                         'on a GPU, 1 on the CPU)')
        add_max_images_argument(sub)
        if name == 'search':
            sub.add_argument('--trials', type=positive_int, default=50)
            sub.add_argument('--seed', type=seed_int, default=0)
        else:
            sub.add_argument('--params', type=Path, required=True,
                             help='JSON with the parameters under "best"')
            sub.add_argument('--metrics', type=Path,
                             help='metrics JSON to write (default: '
                             'OUT/metrics.json); the per-image confusion '
                             'matrices go beside it, NAME.confusion.npz')
    return parser.parse_args()


def main():
    args = parse_args()
    backend = CRFBackend.choose(args.backend, args.device, args.workers,
                                args.batch_size)
    if args.command == 'search':
        check_search_out(args.out, args.scores, args.data)
        result = search(args.scores, args.data, args.split, args.trials,
                        args.seed, args.workers, backend,
                        args.max_images)
        write_search(result, args.out)
        print(f'best {result["best"]}: pixel accuracy '
              f'{result["best_accuracy"]:.2f} on {args.split} '
              f'(without CRF {result["accuracy_without_crf"]:.2f})')
    else:
        record = apply(args.scores, args.data, args.split,
                       read_best_params(args.params), args.out,
                       args.workers, args.metrics, backend,
                       args.max_images)
        print(f'pixel accuracy {record["aAcc"]:.2f}, mean IoU '
              f'{record["mIoU"]:.2f}; written to {args.out}')


if __name__ == '__main__':
    run_tool(main)
