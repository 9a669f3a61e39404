"""Timing and peak memory, shared by the benchmarks (no MMSegmentation
import, so that the CRF benchmark stays light)."""
import resource
import time
from typing import Callable, Optional

import torch
from tqdm import tqdm

from fashionseg.utils.device import synchronize


def time_batches(step: Callable[[int], int], batches: int, warmup: int,
                 device: str, desc: Optional[str] = None) -> float:
    """Images per second of ``step(i)`` (which returns how many images it
    handled) over ``batches`` calls after ``warmup`` ones; the device is
    synchronised only where the clock starts and stops, and timed with
    CUDA events on a GPU. With ``desc``, a progress bar on stderr (its
    update reads no device value, so it adds no wait)."""
    progress = tqdm(total=warmup + batches, desc=desc, unit='batch',
                    disable=desc is None, leave=False)
    with progress:
        for index in range(warmup):
            step(index)
            progress.update()
        cuda = torch.device(device).type == 'cuda'
        synchronize(device)
        if cuda:
            start, end = (torch.cuda.Event(enable_timing=True)
                          for _ in range(2))
            start.record()
        else:
            began = time.perf_counter()
        images = 0
        for index in range(batches):
            images += step(warmup + index)
            progress.update()
        if cuda:
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            seconds = time.perf_counter() - began
    return images / seconds


def peak_memory(device: str) -> tuple:
    """(MiB, what was measured): the GPU memory torch allocated on a GPU
    (since the last ``torch.cuda.reset_peak_memory_stats``), else the
    process's peak resident memory."""
    if torch.device(device).type == 'cuda':
        return (torch.cuda.max_memory_allocated() / 2**20,
                'GPU memory allocated by torch')
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            'process resident memory')
