"""The report's figures for one dataset: its confusion matrix, classes from
head to feet (paper Figure 3), and its best test images with and without
the CRF (paper Figure 1).

    python tools/figures.py --data DATASET_DIR --run RUN_DIR \\
        --confusion RUN_RESULTS/crf.confusion.npz --examples 4 --out OUT
    # writes OUT_confusion.png and OUT_examples.png
"""
import argparse
from pathlib import Path

from fashionseg.dataset_folder import read_dataset_meta
from fashionseg.errors import DataError, UsageError
from fashionseg.evaluation.confusion import load_confusions
from fashionseg.report.figures import (best_examples, is_figure_file,
                                       plot_confusion, plot_examples)
from fashionseg.utils.cli import (add_max_images_argument, positive_int,
                                  run_tool, tool_description)
from fashionseg.utils.output_folder import check_result_file


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('--data', type=Path, required=True,
                        help='dataset folder from tools/convert_data.py')
    parser.add_argument('--run', type=Path, required=True,
                        help='a run\'s folder holding scores_test/ (from '
                        'tools/test.py --out) and crf_test/ (tools/crf.py '
                        'apply)')
    parser.add_argument('--confusion', type=Path, required=True,
                        help='per-image confusion matrices to sum')
    parser.add_argument('--examples', type=positive_int, default=4,
                        help='how many of the best test images to show')
    parser.add_argument('--out', required=True,
                        help='prefix of the two PNG files')
    add_max_images_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    out = Path(args.out)
    if args.out.endswith(('/', '\\')) or out.is_dir():
        raise UsageError(f'--out {args.out}: a prefix of the two file names '
                         '(OUT_confusion.png, OUT_examples.png), not a '
                         'folder; e.g. --out figures/cfpd')
    confusion_png = Path(f'{args.out}_confusion.png')
    examples_png = Path(f'{args.out}_examples.png')
    # Each replaces only a figure of this tool's.
    check_result_file(confusion_png, 'tools/figures.py', '--out',
                      is_figure_file, beside={examples_png: is_figure_file},
                      inputs=[args.data, args.confusion])
    meta = read_dataset_meta(args.data)
    saved = load_confusions(args.confusion)
    if saved['classes'] != [str(c) for c in meta['classes']]:
        raise DataError(
            f'{args.confusion}: its {len(saved["classes"])} classes are not '
            f'the {len(meta["classes"])} classes of {args.data}; give the '
            'confusion file of a run on this dataset')
    # Every input is read and checked before either figure is
    # written, so that a failure leaves neither behind.
    examples = best_examples(args.run, args.data, args.examples,
                             args.max_images)
    plot_confusion(saved['matrices'].sum(0), saved['classes'],
                   confusion_png,
                   f'{meta["name"]}: {args.run.parent.name}, {args.run.name}, '
                   f'test split, with CRF')
    plot_examples(examples, len(saved['classes']), examples_png)
    print(f'wrote {args.out}_confusion.png and {args.out}_examples.png')


if __name__ == '__main__':
    # A confusion file or run folder that is not there is named by OSError.
    run_tool(main, also=(OSError,))
