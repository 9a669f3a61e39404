"""Write (or print) the machine, device and package versions as JSON."""
import argparse
from pathlib import Path

from fashionseg.utils.cli import emit_json, run_tool
from fashionseg.utils.environment import collect_environment
from fashionseg.utils.output_folder import (check_result_file,
                                            is_environment_file)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', type=Path, help='JSON file to write; '
                        'prints to stdout when omitted')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.out is not None:
        # An earlier record of this tool is replaced; nothing else.
        check_result_file(args.out, 'tools/collect_env.py', '--out',
                          is_environment_file)
    emit_json(collect_environment(), args.out, echo=False)


if __name__ == '__main__':
    run_tool(main)
