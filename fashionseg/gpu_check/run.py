"""Running the check's steps in order, each recorded as passed or failed
before the next runs (:mod:`fashionseg.gpu_check.steps`)."""
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from fashionseg.gpu_check.steps import FULL, QUICK, CheckPaths, GPUCheck
from fashionseg.gpu_check.summary import bars, summary_table
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.device import device_name


def run_gpu_check(out: Path, paths: CheckPaths, device: str = 'cuda',
                  quick: bool = False,
                  progress: Callable[[str], None] = print) -> dict:
    """Run every step; ``gpu_check.json`` in ``out`` is rewritten after
    each, so that a run cut short keeps what it measured."""
    sizes = QUICK if quick else FULL
    check = GPUCheck(out, device, sizes, paths)
    check.work.mkdir(parents=True, exist_ok=True)
    record = dict(device=device, device_name=device_name(device),
                  quick=quick, sizes=asdict(sizes), checks={})
    for name, step in check.steps():
        progress(f'[gpu-check] {name} ...')
        started = time.perf_counter()
        try:
            result = dict(status='pass', **step())
        except Exception as error:  # noqa: BLE001 (recorded, then go on)
            result = dict(status='fail',
                          error=f'{type(error).__name__}: {error}',
                          traceback=traceback.format_exc(limit=6))
        result['wall_seconds'] = time.perf_counter() - started
        record['checks'][name] = result
        progress(f'[gpu-check] {name}: {result["status"]} '
                 f'({result["wall_seconds"]:.1f} s)'
                 + (f': {result["error"]}' if 'error' in result else ''))
        record['passed'] = all(c['status'] == 'pass'
                               for c in record['checks'].values())
        write_text_atomic(Path(out) / 'gpu_check.json',
                          json.dumps(record, indent=2, default=str) + '\n')
    record['bars'] = bars(record) if device == 'cuda' and not quick else {}
    write_text_atomic(Path(out) / 'gpu_check.json',
                      json.dumps(record, indent=2, default=str) + '\n')
    write_text_atomic(Path(out) / 'gpu_check.md', summary_table(record))
    return record
