"""Is training input-bound? Images per second of the training step alone
(one batch reused: model, loss, optimiser) against the full training loop
(data loading and augmentation included), for any config.

The paper trains at batch 5 (section 4); issue bar: the full loop reaches at
least 90 % of the model-only rate on a GPU.
"""
import time
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from fashionseg.runner.training import configure_training
from fashionseg.utils.device import device_name, synchronize


class _IterClock(Hook):
    """Time of the training iterations after ``warmup``: the device is
    synchronised only where the clock starts and where it stops (after the
    last iteration, not when the runner has finished tearing down), so
    that timing does not stall the loop it measures."""

    def __init__(self, warmup: int, iters: int):
        self.warmup = warmup
        self.iters = iters
        self.start = self.end = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        done = runner.iter + 1
        if done == self.warmup:
            synchronize()
            self.start = time.perf_counter()
        elif done == self.warmup + self.iters:
            synchronize()
            self.end = time.perf_counter()

    def rate(self, batch_size: int) -> float:
        return self.iters * batch_size / (self.end - self.start)


def _iter_based(cfg, iters: int) -> None:
    """Train for ``iters`` iterations, without validation or checkpoints."""
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_dataloader.pop('persistent_workers', None)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]


def benchmark_training(config: str, work_dir: str, iters: int = 50,
                       warmup: int = 10, amp: bool = False,
                       cfg_options: Optional[dict] = None,
                       pretrained: bool = False,
                       speedups: Sequence[str] = ()) -> dict:
    cfg = configure_training(config, work_dir=work_dir, amp=amp,
                             pretrained=pretrained, cfg_options=cfg_options,
                             speedups=speedups)
    _iter_based(cfg, iters + warmup)
    runner = Runner.from_cfg(cfg)
    batch_size = cfg.train_dataloader.batch_size
    clock = _IterClock(warmup, iters)
    runner.register_hook(clock, priority='LOWEST')
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    runner.train()
    full = clock.rate(batch_size)

    # The same steps on one batch that is already in memory.
    model, optim_wrapper = runner.model, runner.optim_wrapper
    batch = next(iter(runner.train_dataloader))
    model.train()
    for i in range(warmup + iters):
        if i == warmup:
            synchronize()
            start = time.perf_counter()
        model.train_step(batch, optim_wrapper)
    synchronize()
    model_only = iters * batch_size / (time.perf_counter() - start)
    device = device_name()
    return {
        'config': config,
        'batch_size': batch_size,
        'iterations_timed': iters,
        'amp': cfg.amp_dtype,
        'speedups': list(cfg.training_speedups),
        'images_per_second_model_only': round(model_only, 3),
        'images_per_second_full_loop': round(full, 3),
        'full_loop_fraction_of_model_only': round(full / model_only, 3),
        'dataloader_workers': cfg.train_dataloader.num_workers,
        'peak_gpu_memory_gib': round(
            torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
        'device': device,
    }
