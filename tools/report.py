"""Regenerate the paper's tables from the pipeline's results.

    python tools/report.py --params params.yaml [--section demo] --out results
"""
import argparse
from pathlib import Path

from fashionseg.report.paper import load_paper_figures, load_section
from fashionseg.report.render import (build_report, check_report_out,
                                      write_report)
from fashionseg.utils.cli import run_tool, tool_description


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('--params', type=Path, default=Path('params.yaml'))
    parser.add_argument('--section', help='params.yaml section to report '
                        '(demo); default: the top level, the paper\'s run')
    parser.add_argument('--out', type=Path, required=True,
                        help='results folder: reads runs/, figures/ and '
                        'benchmark.json there, writes tables.md, .csv, '
                        '.json and metrics.json')
    return parser.parse_args()


def main():
    args = parse_args()
    params = load_section(args.params, args.section)
    check_report_out(args.out)
    report = build_report(args.out, params, load_paper_figures())
    write_report(report, args.out)
    print(f'wrote {args.out}/tables.md, tables.csv, tables.json and '
          'metrics.json')


if __name__ == '__main__':
    run_tool(main, also=(OSError,))
