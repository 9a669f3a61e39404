"""Download a dataset's raw release (or take a local copy with --from).

    python tools/fetch_data.py {fashionista,cfpd,ccp} --out RAW [--from PATH]
"""
import argparse
from pathlib import Path

from custom_datasets.fetch import (SOURCES, FetchError, fetch_release,  # noqa
                                   local_copy, release_present)
from fashionseg.utils.cli import run_tool, tool_description


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('dataset', choices=sorted(SOURCES))
    parser.add_argument('--out', type=Path, required=True,
                        help='folder to hold the raw release')
    parser.add_argument('--from', dest='from_path', type=Path,
                        help='a local copy: the downloaded file, or a folder '
                        'holding the extracted release')
    parser.add_argument('--local-copy', type=Path, metavar='DIR',
                        help='take the release from DIR when it holds one '
                        '(the downloaded file or the extracted release), '
                        'else download; the pipeline passes '
                        'data/downloads/DATASET')
    parser.add_argument('--skip-existing', action='store_true',
                        help='do nothing when OUT already holds the release')
    parser.add_argument('--url', help='download from this address instead '
                        'of the release\'s own (a mirror)')
    parser.add_argument('--retries', type=int, default=3)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.skip_existing and release_present(args.dataset, args.out):
        print(f'{args.dataset}: raw release already in {args.out}')
        return
    from_path = args.from_path
    if from_path is None and args.local_copy is not None:
        from_path = local_copy(args.dataset, args.local_copy)
    try:
        where = fetch_release(args.dataset, args.out, from_path,
                              url=args.url, retries=args.retries)
    except FetchError as error:
        hint = ''
        if args.local_copy is not None:
            hint = (f'\nOr put the downloaded file (or the extracted '
                    f'release) in {args.local_copy}/ and rerun.')
        raise FetchError(f'{error}{hint}') from None
    print(f'{args.dataset}: raw release in {where}')


if __name__ == '__main__':
    run_tool(main)
