"""bf16 mixed-precision training without a loss scaler.

mmengine's ``AmpOptimWrapper`` always builds a dynamic ``GradScaler``: with
bf16, whose range is float32's, scaling never changes a gradient, yet
every step still pays an unscale pass and a host synchronisation (the
scaler's check for infinities). :class:`BF16OptimWrapper` is the plain
``OptimWrapper`` with the forward pass under bf16 autocast, nothing else.
fp16 keeps ``AmpOptimWrapper`` and its dynamic scaling, which fp16 needs.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from mmseg.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` runs the forward pass under
    bf16 autocast (on the model's device type)."""

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        # The model's own device type, not mmengine's process-wide guess.
        device = next(model.parameters()).device.type
        with super().optim_context(model), autocast(device_type=device,
                                                    dtype=torch.bfloat16):
            yield
