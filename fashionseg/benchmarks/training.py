"""Is training input-bound? Images per second of the training step alone
(one batch reused: model, loss, optimiser) against the full training loop
(data loading and augmentation included), for any config.

The paper trains at batch 5 (section 4); issue bar: the full loop reaches at
least 90 % of the model-only rate on a GPU.
"""
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook

from fashionseg.benchmarks.arithmetic import (count_flops, fraction_of_peak,
                                              peak_tflops)
from fashionseg.benchmarks.timing import DeviceClock
from fashionseg.runner.run_config import build_runner
from fashionseg.runner.training import configure_training
from fashionseg.utils.device import device_name, release_memory


class _IterClock(Hook):
    """Time of the training iterations after ``warmup`` (CUDA events on a
    GPU, :class:`~fashionseg.benchmarks.timing.DeviceClock`): the device
    is synchronised only where the clock starts and where it stops (after
    the last iteration, not when the runner has finished tearing down),
    so that timing does not stall the loop it measures."""

    def __init__(self, warmup: int, iters: int):
        self.warmup = warmup
        self.iters = iters
        self.clock = DeviceClock()
        self.seconds = None

    def before_train(self, runner) -> None:
        if self.warmup == 0:  # from the first batch's loading on
            self.clock.start()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        done = runner.iter + 1
        if done == self.warmup:
            self.clock.start()
        if done == self.warmup + self.iters:
            self.seconds = self.clock.stop()

    def rate(self, batch_size: int) -> float:
        return self.iters * batch_size / self.seconds


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


def _training_flops(model, batch) -> int:
    """Operations of one forward and backward pass over ``batch`` (the
    optimiser's update is left out: elementwise, a rounding error here)."""
    def step():
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    # Counted eagerly: a compiled model (the ``compile`` speed-up) would
    # otherwise recompile for the counter.
    with torch.compiler.set_stance('force_eager'):
        flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def _rounded(value):
    return None if value is None else round(value, 4)


def benchmark_training(config: str, work_dir: str, iters: int = 50,
                       warmup: int = 10, amp: bool = False,
                       cfg_options: Optional[dict] = None,
                       pretrained: bool = False,
                       speedups: Sequence[str] = (),
                       data_root: Optional[str] = None) -> dict:
    cfg = configure_training(config, work_dir=work_dir, amp=amp,
                             pretrained=pretrained, cfg_options=cfg_options,
                             speedups=speedups, data_root=data_root)
    _iter_based(cfg, iters + warmup)
    runner = build_runner(cfg)
    batch_size = cfg.train_dataloader.batch_size
    clock = _IterClock(warmup, iters)
    runner.register_hook(clock, priority='LOWEST')
    if torch.cuda.is_available():
        release_memory('cuda')
    runner.train()
    full = clock.rate(batch_size)

    # The same steps on one batch that is already in memory.
    model, optim_wrapper = runner.model, runner.optim_wrapper
    batch = next(iter(runner.train_dataloader))
    model.train()
    clock = DeviceClock()
    for i in range(warmup + iters):
        if i == warmup:
            clock.start()
        model.train_step(batch, optim_wrapper)
    model_only = iters * batch_size / clock.stop()
    # Read before the operations are counted: that pass runs outside the
    # run's autocast and would set the peak.
    peak_memory = torch.cuda.max_memory_allocated() \
        if torch.cuda.is_available() else None
    device = device_name()
    flops = _training_flops(model, batch) / batch_size
    with torch.no_grad():
        input_size = list(model.data_preprocessor(
            batch, True)['inputs'].shape[-2:])
    # fp32 convolutions run in TF32 where cuDNN is allowed it (PyTorch's
    # default), and their peak is TF32's.
    precision = 'bf16' if cfg.amp_dtype == 'bfloat16' else \
        'fp16' if cfg.amp_dtype == 'float16' else \
        'tf32' if torch.backends.cudnn.allow_tf32 else 'fp32'
    return {
        'config': config,
        'batch_size': batch_size,
        'iterations_timed': iters,
        'amp': cfg.amp_dtype,
        'speedups': list(cfg.training_speedups),
        'images_per_second_model_only': round(model_only, 3),
        'images_per_second_full_loop': round(full, 3),
        'full_loop_fraction_of_model_only': round(full / model_only, 3),
        'image_size': list(batch['inputs'][0].shape[-2:]),
        # The network's input, padded as the data preprocessor pads it:
        # what the operations are counted at.
        'input_size': input_size,
        'training_gflop_per_image': round(flops / 1e9, 1),
        'peak_tflops': peak_tflops(device, precision),
        'fraction_of_peak_full_loop': _rounded(fraction_of_peak(
            full, flops, device, precision)),
        'fraction_of_peak_model_only': _rounded(fraction_of_peak(
            model_only, flops, device, precision)),
        'dataloader_workers': cfg.train_dataloader.num_workers,
        # The flag in force during the run (build_runner sets it from the
        # config's env_cfg).
        'cudnn_benchmark': torch.backends.cudnn.benchmark
        if torch.cuda.is_available() else None,
        'peak_gpu_memory_gib': None if peak_memory is None
        else round(peak_memory / 2**30, 2),
        'device': device,
    }
