"""Write (or print) the machine, device and package versions as JSON."""
import argparse
from pathlib import Path

from fashionseg.utils.cli import emit_json, run_tool
from fashionseg.utils.environment import collect_environment


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', type=Path, help='JSON file to write; '
                        'prints to stdout when omitted')
    return parser.parse_args()


def main():
    args = parse_args()
    emit_json(collect_environment(), args.out, echo=False)


if __name__ == '__main__':
    run_tool(main)
