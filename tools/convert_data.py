"""Convert a raw release into MMSegmentation's img_dir / ann_dir layout.

    python tools/convert_data.py {fashionista,cfpd,ccp} --src RAW --out OUT
"""
import argparse
from pathlib import Path

from custom_datasets.convert import RELEASES, convert_release
from custom_datasets.writer import MIN_MAX_SIZE, check_max_size
from fashionseg.errors import UsageError
from fashionseg.utils.cli import run_tool, tool_description


def max_size(text: str) -> int:
    try:
        value = int(text)
        check_max_size(value)
    except (ValueError, UsageError):
        raise argparse.ArgumentTypeError(
            f'must be 0 (keep the size) or at least {MIN_MAX_SIZE} pixels, '
            f'not {text!r}') from None
    return value


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('dataset', choices=sorted(RELEASES))
    parser.add_argument('--src', type=Path, required=True,
                        help='folder holding the raw release')
    parser.add_argument('--out', type=Path, required=True,
                        help='dataset folder to write; an existing one is '
                        'replaced only if this tool wrote it')
    parser.add_argument('--max-size', type=max_size, metavar='PX',
                        help='scale photos and label maps down to this '
                        f'longer side, at least {MIN_MAX_SIZE} (quick runs '
                        'such as `make demo`); by default (or 0) the '
                        'photos are kept byte for byte')
    return parser.parse_args()


def main():
    args = parse_args()
    counts = convert_release(args.dataset, args.src, args.out,
                             args.max_size or None)
    print(f'{args.dataset}: wrote {args.out} '
          f'(train {counts["train"]}, val {counts["val"]}, '
          f'test {counts["test"]})')


if __name__ == '__main__':
    run_tool(main)
