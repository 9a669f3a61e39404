"""Running the check's steps within a time budget: each step in its own
process (``tools/gpu_check.py --step NAME``) with a hard timeout from what
is left of the budget, so that a step that fails, raises a usage error or
hangs is recorded as such and the next steps still run. Every
sub-measurement is appended to ``gpu_check.jsonl`` as it is made (by the
step's process), and ``gpu_check.json`` and ``gpu_check.md`` are rewritten
after every step, so that a run cut short keeps what it measured."""
import contextlib
import fnmatch
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, List

from fashionseg.errors import UsageError
from fashionseg.gpu_check.steps import (MEASUREMENTS, STEP_NAMES, STEP_WEIGHTS,
                                        CheckPaths, GPUCheck, measurements,
                                        result_path, sizes_for)
from fashionseg.gpu_check.summary import bars, summary_table
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.cli import Terminated
from fashionseg.utils.device import device_name
from fashionseg.utils.output_folder import locked_output_folder

DEFAULT_BUDGET = 300.0
# A step is not started with less than this many seconds left.
MIN_STEP_SECONDS = 5.0
STEP_START_SECONDS = 20.0
# Steps that only read what the others measured: they run in the check's
# own process, in milliseconds, instead of a new process that would spend
# seconds importing torch out of the budget.
IN_PROCESS_STEPS = ('projection',)
# Marks the check's own scratch folder (``out/work``).
WORK_MARKER = '.gpu-check'
# What the check writes in its scratch folder: an unmarked folder (from a
# run before the mark) holding only these is an earlier run's.
EARLIER_WORK_NAMES = ('*.log', 'step_*.json', 'state.json', 'ccp', 'train',
                      'test', 'runs', 'bench_*', 'scores_*', 'cycled_*')


def step_command(paths: CheckPaths, out: Path, device: str, quick: bool,
                 long: bool) -> Callable[[str], List[str]]:
    """How a step runs: the checkout's ``tools/gpu_check.py --step``."""
    def command(name: str) -> List[str]:
        return ([sys.executable, str(paths.repo / 'tools' / 'gpu_check.py'),
                 '--step', name, '--out', str(out), '--device', device]
                + (['--quick'] if quick else [])
                + (['--long'] if long else []))
    return command


def _run_step(command: List[str], cwd: Path, timeout: float, log: Path,
              measured: Path, progress: Callable[[str], None]):
    """(exit status or None when it ran out of time, seconds). Each
    measurement the step appends to ``measured`` is shown as it comes."""
    started = time.perf_counter()
    shown = measured.stat().st_size if measured.is_file() else 0
    with open(log, 'wb') as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
        status = None
        try:
            while status is None and \
                    time.perf_counter() - started < max(timeout, 0.1):
                try:
                    status = process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
                shown = _show_new(measured, shown, progress)
        finally:
            # The step's whole process group (data-loader and compile
            # workers too), when it ran out of time and also when the
            # check itself is stopped.
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    _show_new(measured, shown, progress)
    return status, time.perf_counter() - started


def _show_new(measured: Path, shown: int, progress) -> int:
    """Show the measurements appended since byte ``shown``; returns where
    the next look starts (after the last whole line)."""
    if not measured.is_file():
        return shown
    with open(measured, 'rb') as f:
        f.seek(shown)
        text = f.read().decode(errors='replace')
    whole = text[:text.rfind('\n') + 1]
    for line in whole.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        progress(f'  [{entry.get("step")} {entry.get("seconds", 0):6.1f} s] '
                 f'{entry.get("key")}: '
                 + json.dumps(entry.get('value'), default=str)[:120])
    return shown + len(whole.encode())


def _step_record(name: str, out: Path, status, seconds: float,
                 timeout: float, log: Path) -> dict:
    """What a finished (or killed) step leaves: its own result file when
    it wrote one, else a failure with the end of its log; and every
    measurement it appended, whatever happened."""
    written = result_path(out, name)
    measured = measurements(out, name)
    if status is None:
        result = dict(status='timeout',
                      error=f'ran out of its {timeout:.0f} s of the budget')
    elif written.is_file():
        result = json.loads(written.read_text())
    else:
        tail = log.read_text(errors='replace')[-1500:] if log.is_file() \
            else ''
        lines = [line for line in tail.splitlines() if line.strip()]
        result = dict(status='fail',
                      error=(lines[-1] if lines else
                             f'exited with status {status}'),
                      log_tail=tail)
    if measured:
        result.setdefault('measured', measured)
    result.update(wall_seconds=round(seconds, 2), timeout_seconds=round(
        timeout, 1), log=str(log))
    return result


def run_gpu_check(out: Path, paths: CheckPaths, device: str = 'cuda',
                  quick: bool = False, long: bool = False,
                  budget: float = DEFAULT_BUDGET,
                  progress: Callable[[str], None] = print,
                  command: Callable[[str], List[str]] = None) -> dict:
    """Run every step within ``budget`` seconds and write the record."""
    if not (math.isfinite(budget) and budget > 0):
        raise UsageError('the budget must be a number of seconds above 0, '
                         f'not {budget}')
    if quick and long:
        raise UsageError('--quick and --long exclude each other')
    # Absolute: the steps' processes run in the checkout, wherever the
    # check was started.
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise UsageError(f'--out {out} is a file, not a folder')
    # One check at a time in a folder: a second would remove the first's
    # work folder under its running step.
    with locked_output_folder(out, 'tools/gpu_check.py'):
        _check_record_files(out)
        return _run_check(out, paths, device, quick, long, budget, progress,
                          command)


RECORD_FILES = ('gpu_check.json', 'gpu_check.md', MEASUREMENTS)


def _check_record_files(out: Path) -> None:
    """The record's files in ``out`` are replaced only when they are an
    earlier check's (its ``gpu_check.json`` says so); other files in the
    folder (the dated copies of earlier runs, a user's) are left alone."""
    present = [out / name for name in RECORD_FILES if (out / name).exists()]
    if not present:
        return
    try:
        record = json.loads((out / 'gpu_check.json').read_text())
        ours = isinstance(record, dict) and {'checks', 'device'} <= set(
            record)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UsageError(
            f'--out {out} holds {", ".join(p.name for p in present)}, which '
            'an earlier gpu-check did not write (no check record in '
            'gpu_check.json); choose another --out')


def _run_check(out: Path, paths: CheckPaths, device: str, quick: bool,
               long: bool, budget: float, progress, command) -> dict:
    # A new run starts from nothing: an earlier run's results, state,
    # scores or checkpoints would pass for this run's (or make its tools
    # refuse their folders).
    _fresh_work_folder(out)
    (out / MEASUREMENTS).unlink(missing_ok=True)
    sizes = sizes_for(quick, long)
    command = command or step_command(paths, out, device, quick, long)
    record = dict(device=device, device_name=device_name(device),
                  quick=quick, long=long, budget_seconds=budget,
                  sizes=asdict(sizes), checks={})
    started = time.perf_counter()
    # The step running now and when it started (for a stopped check).
    running = {}
    # A check stopped from outside (SIGTERM, a cluster's time limit) ends
    # the running step's processes on its way out.
    previous = signal.signal(signal.SIGTERM, _stop) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        # At once: a previous run's record in the folder would otherwise
        # stand for this run until its first step ends.
        _write(record, out, device, quick, started)
        _run_steps(record, out, paths, command, budget, started, progress,
                   device, quick, sizes, running)
    except (Terminated, KeyboardInterrupt):
        # Stopped (SIGTERM, Ctrl-C): the record says which step was running,
        # for how long, and that the check did not finish.
        name = running.get('name')
        if name is not None and name not in record['checks']:
            record['checks'][name] = dict(
                status='stopped', wall_seconds=round(
                    time.perf_counter() - running['started'], 2),
                error='the check was stopped while this step ran',
                measured=measurements(out, name))
        record['stopped'] = True
        _write(record, out, device, quick, started)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return record


def _fresh_work_folder(out: Path) -> None:
    """An empty ``out/work`` for this run, marked as the check's. An
    earlier run's is removed: marked, or (from before the mark) holding
    the ``stack`` step's log and nothing but what the check writes there;
    any other folder is refused, not deleted."""
    work = out / 'work'
    try:
        if work.is_symlink() or (work.exists() and not work.is_dir()):
            raise UsageError(f'--out {out}: {work} is not a folder the '
                             'gpu-check wrote; choose another --out')
        if work.is_dir() and any(work.iterdir()):
            if not _written_by_the_check(work):
                raise UsageError(
                    f'--out {out}: {work} holds files the gpu-check did not '
                    'write; choose a new or empty --out')
            shutil.rmtree(work)
        work.mkdir(parents=True)
        (work / WORK_MARKER).write_text(
            'the scratch folder of tools/gpu_check.py; the next check in '
            'this --out removes it\n')
    except OSError as error:
        raise UsageError(f'--out {out}: cannot write there '
                         f'({error.strerror or error})') from None


def _written_by_the_check(work: Path) -> bool:
    if (work / WORK_MARKER).is_file():
        return True
    names = [path.name for path in work.iterdir()]
    return 'stack.log' in names and all(
        any(fnmatch.fnmatchcase(name, pattern)
            for pattern in EARLIER_WORK_NAMES) for name in names)


class CheckStopped(Terminated):
    """The check was stopped from outside while a step ran (ends a tool
    as any SIGTERM does: :func:`fashionseg.utils.cli.run_tool`)."""


def _stop(signum, frame):
    raise CheckStopped(
        f'stopped by {signal.Signals(signum).name}; the running step\'s '
        'processes were ended, and what the steps measured is in '
        f'{MEASUREMENTS} and gpu_check.json')


def _run_steps(record, out, paths, command, budget, started, progress,
               device, quick, sizes, running: dict) -> None:
    for index, name in enumerate(STEP_NAMES):
        running.update(name=name, started=time.perf_counter())
        if name in IN_PROCESS_STEPS:
            result = GPUCheck(out, device, sizes, paths,
                              progress=lambda line: None).run(name)
            result['wall_seconds'] = result['seconds']
        else:
            result = _run_in_process_of_its_own(
                name, index, budget - (time.perf_counter() - started),
                command, paths, out, started, progress)
        record['checks'][name] = result
        progress(f'[gpu-check {time.perf_counter() - started:6.1f} s] '
                 f'{name}: {result["status"]}'
                 + (f': {result["error"]}' if result.get('error') else ''))
        _write(record, out, device, quick, started)


def _run_in_process_of_its_own(name, index, left, command, paths, out,
                               started, progress) -> dict:
    """Step ``name`` in its own process, with its share of the ``left``
    seconds of the budget."""
    weights = [STEP_WEIGHTS[n] for n in STEP_NAMES[index:]
               if n not in IN_PROCESS_STEPS]
    # At least what a step needs to start and do anything (its process
    # and, for some, a tool's process), where that much is left.
    timeout = min(left, max(left * weights[0] / sum(weights),
                            STEP_START_SECONDS))
    if timeout < MIN_STEP_SECONDS:
        return dict(status='skipped', wall_seconds=0.0,
                    error=f'{max(left, 0):.0f} s of the budget left')
    progress(f'[gpu-check {time.perf_counter() - started:6.1f} s] '
             f'{name} (at most {timeout:.0f} s) ...')
    log = out / 'work' / f'{name}.log'
    status, seconds = _run_step(command(name), paths.repo, timeout, log,
                                out / MEASUREMENTS, progress)
    return _step_record(name, out, status, seconds, timeout, log)


def _write(record: dict, out: Path, device: str, quick: bool,
           started: float) -> None:
    record['wall_seconds'] = round(time.perf_counter() - started, 2)
    # Passed once every step has run and passed, not before.
    record['passed'] = set(record['checks']) == set(STEP_NAMES) and all(
        c['status'] == 'pass' for c in record['checks'].values())
    record['bars'] = bars(record) if device == 'cuda' and not quick else {}
    write_text_atomic(out / 'gpu_check.json',
                      json.dumps(record, indent=2, default=str) + '\n')
    write_text_atomic(out / 'gpu_check.md', summary_table(record))
