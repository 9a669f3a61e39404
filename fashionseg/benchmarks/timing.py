"""Timing and peak memory, shared by the benchmarks (no MMSegmentation
import, so that the CRF benchmark stays light)."""
import resource
import time
from typing import Callable, Optional

import torch
from tqdm import tqdm

from fashionseg.utils.device import synchronize


class DeviceClock:
    """Seconds from :meth:`start` to the end of the work queued on
    ``device`` by :meth:`stop`: the device is synchronised at the start
    (the host's work of the timed span does not overlap what came
    before it) and timed with CUDA events on a GPU, by the host's clock
    elsewhere."""

    def __init__(self, device: str = None):
        self.cuda = torch.device(device).type == 'cuda' if device \
            is not None else torch.cuda.is_available()
        self.device = device

    def start(self) -> None:
        synchronize(self.device)
        if self.cuda:
            self._events = [torch.cuda.Event(enable_timing=True)
                            for _ in range(2)]
            self._events[0].record()
        else:
            self._began = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self._events[1].record()
            self._events[1].synchronize()
            return self._events[0].elapsed_time(self._events[1]) / 1000
        return time.perf_counter() - self._began  # the CPU's work is done


def time_batches(step: Callable[[int], int], batches: int, warmup: int,
                 device: str, desc: Optional[str] = None) -> float:
    """Images per second of ``step(i)`` (which returns how many images it
    handled) over ``batches`` calls after ``warmup`` ones, timed by a
    :class:`DeviceClock` (CUDA events on a GPU). With ``desc``, a progress
    bar on stderr (its update reads no device value, so it adds no
    wait)."""
    progress = tqdm(total=warmup + batches, desc=desc, unit='batch',
                    disable=desc is None, leave=False)
    clock = DeviceClock(device)
    with progress:
        for index in range(warmup):
            step(index)
            progress.update()
        clock.start()
        images = 0
        for index in range(batches):
            images += step(warmup + index)
            progress.update()
        seconds = clock.stop()
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
