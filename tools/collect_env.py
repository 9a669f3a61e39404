"""Write (or print) the machine, device and package versions as JSON."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionseg.environment import collect_environment  # noqa: E402
from fashionseg.io import write_text_atomic  # noqa: E402


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
