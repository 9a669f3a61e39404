"""Write (or print) the machine, device and package versions as JSON."""
import argparse
import json
import sys
from pathlib import Path

from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.environment import collect_environment


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', type=Path, help='JSON file to write; '
                        'prints to stdout when omitted')
    return parser.parse_args()


def main():
    args = parse_args()
    text = json.dumps(collect_environment(), indent=2) + '\n'
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)


if __name__ == '__main__':
    main()
