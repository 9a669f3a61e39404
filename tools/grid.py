"""Run the pipeline's independent stages side by side as submitit jobs.

Each stage is a job that runs `dvc repro --single-item STAGE`, so that
dvc.lock ends as `dvc repro` leaves it (docs/pipeline.md, "Many GPUs or a
cluster").

    python tools/grid.py report environment --jobs 8      # 8 GPUs
    python tools/grid.py report environment --executor slurm \\
        --partition gpu --account proj --time-min 720
    python tools/grid.py demo-report --jobs 2             # 2 CPU cores

Defaults come from `grid:` in params.yaml.
"""
import argparse
from pathlib import Path

from fashionseg.errors import UsageError
from fashionseg.pipeline.grid import (EXECUTORS, Grid, GridSettings, Pipeline,
                                      read_grid_section)
from fashionseg.utils.cli import run_tool, tool_description


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('targets', nargs='+', metavar='STAGE',
                        help='stages to bring up to date, with everything '
                        'upstream of them (as for dvc repro)')
    parser.add_argument('--executor', choices=EXECUTORS,
                        help='local (this machine) or slurm')
    parser.add_argument('--jobs', type=int, help='jobs at a time (local: '
                        'default one per GPU, else one; more than the GPUs '
                        'share them); on SLURM jobs queued at once (0: no '
                        'limit)')
    parser.add_argument('--threads', type=int, help='CPU threads of each '
                        'local job (default: the cores shared out)')
    parser.add_argument('--partition', help='SLURM partition')
    parser.add_argument('--account', help='SLURM account')
    parser.add_argument('--time-min', type=int,
                        help='SLURM time limit of each job, in minutes')
    parser.add_argument('--params', type=Path, default=Path('params.yaml'),
                        help='the grid: section of this file gives the '
                        'defaults')
    return parser.parse_args()


def main():
    args = parse_args()
    grid = read_grid_section(args.params)
    slurm = grid.pop('slurm', None) or {}
    for key in ('partition', 'account', 'time_min'):
        if getattr(args, key) is not None:
            slurm[key] = getattr(args, key)
    for key in ('executor', 'jobs', 'threads'):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    try:
        settings = GridSettings(slurm=slurm, **grid)
    except TypeError as error:  # a key GridSettings does not know
        raise UsageError(f'{args.params}: grid: {error}') from None
    pipeline = Pipeline(Path('.'), args.targets)
    outcome = Grid(pipeline, settings,
                   lambda line: print(line, flush=True)).run()
    print(f'{len(outcome.ran)} stage(s) ran, {len(outcome.unchanged)} '
          f'unchanged, {len(outcome.failed)} failed, '
          f'{len(outcome.not_run)} not run')
    for name, log in outcome.failed.items():
        print(f'failed: {name}; log: {log}')
    for name in outcome.not_run:
        print(f'not run (something upstream failed): {name}')
    if outcome.failed:
        print('Rerun the same command to run only what is missing.')
        return 1
    names = [n for n in pipeline.order if n not in pipeline.always_changed]
    left = [n for n, changed in pipeline.changed(names).items() if changed]
    if left:
        print('dvc status: changed since they ran: ' + ', '.join(left))
        return 1
    print('dvc status: the stages are up to date (dvc.lock records them)'
          + ''.join(f'; {n} runs every time (always_changed)'
                    for n in sorted(pipeline.always_changed)))


if __name__ == '__main__':
    run_tool(main)
