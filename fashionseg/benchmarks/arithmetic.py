"""How much of a GPU's arithmetic a measured rate uses: the operations a
step costs, counted by PyTorch's ``FlopCounterMode`` (a multiply-add is
two operations), against the GPU's peak from its datasheet."""
from typing import Callable, Optional, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) peaks from the vendors' datasheets, in TFLOP/s, SXM
# parts: the tensor cores' bf16, fp16 and TF32 (which PyTorch's
# convolutions use for fp32 unless told otherwise,
# torch.backends.cudnn.allow_tf32), and plain fp32 (TF32 off).
PEAK_TFLOPS = {
    'H200': dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0),
    'H100': dict(bf16=989.0, fp16=989.0, tf32=494.0, fp32=67.0),
    'A100': dict(bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5),
}


def peak_tflops(device_name: str, precision: str) -> Optional[float]:
    """The datasheet peak of the GPU named ``device_name`` (as torch names
    it) for ``precision`` (``bf16``, ``fp16``, ``tf32`` or ``fp32``, the
    last with TF32 off), or None for a GPU not listed and for the CPU."""
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_name.upper():
            return peaks.get(precision)
    return None


def count_flops(step: Callable[[], object]) -> int:
    """The floating-point operations of one call of ``step``."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def fraction_of_peak(images_per_s: float, flops_per_image: float,
                     device_name: str, precision: str) -> Optional[float]:
    peak = peak_tflops(device_name, precision)
    if peak is None or not flops_per_image:
        return None
    return images_per_s * flops_per_image / (peak * 1e12)


def forward_flops_per_image(config: str, size: Tuple[int, int],
                            auxiliary: bool = False) -> int:
    """The operations of one forward pass of ``config``'s model on one
    image of ``size`` (height, width), padded as its data preprocessor
    pads it, with its auxiliary heads where ``auxiliary`` (they run in
    training only); counted on PyTorch's meta device, which builds no
    weights and computes nothing (about a second per model)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import fashionseg.mmseg_modules  # noqa: F401 (the project's modules)
    init_default_scope('mmseg')
    model_cfg = Config.fromfile(config).model
    divisor = (model_cfg.get('data_preprocessor') or {}).get(
        'size_divisor') or 1
    height, width = (-(-side // divisor) * divisor for side in size)
    with torch.device('meta'):
        model = MODELS.build(model_cfg).eval()
        image = torch.empty(1, 3, height, width)

    def forward():
        model(image, mode='tensor')
        if auxiliary and getattr(model, 'with_auxiliary_head', False):
            features = model.extract_feat(image)
            heads = model.auxiliary_head
            for head in heads if isinstance(heads, torch.nn.ModuleList) \
                    else [heads]:
                head(features)

    with torch.no_grad():
        return count_flops(forward)
