"""Choosing the device a pipeline stage runs on (``device`` in
params.yaml): ``cpu`` hides every GPU, ``cuda`` insists on one, ``auto``
takes a GPU where there is one (mmengine's default)."""
import os
import platform
import sys

import torch

from fashionseg.errors import UsageError

DEVICES = ('auto', 'cpu', 'cuda')


def select_device(device: str) -> str:
    """Apply ``device`` before anything touches CUDA; returns the device
    that will be used (``cpu`` or ``cuda``)."""
    if device not in DEVICES:
        raise UsageError(f'device must be one of {DEVICES}, not {device!r}')
    if device == 'cpu':
        hide_gpus()
        return 'cpu'
    if torch.cuda.is_available():
        return 'cuda'
    if device == 'cuda':
        raise UsageError('device cuda was asked for (--device or '
                         'params.yaml: device) but ' + why_no_cuda())
    return 'cpu'


def hide_gpus() -> None:
    """Run this process, and those it starts, on the CPU. mmengine places
    models on CUDA whenever torch says it is available, and decides so
    when it is imported; CUDA reads ``CUDA_VISIBLE_DEVICES`` once per
    process, when it first counts the devices (mmengine's import does), so
    the variable hides the GPUs from the processes started from here only.
    In this process torch's answer and mmengine's device are set too."""
    import mmengine.device.utils as mmengine_device
    os.environ['CUDA_VISIBLE_DEVICES'] = ''
    torch.cuda.is_available = _no_cuda
    mmengine_device.DEVICE = 'cpu'


def _no_cuda() -> bool:
    """``torch.cuda.is_available`` in a process told to use the CPU."""
    return False


def why_no_cuda() -> str:
    """Why torch sees no CUDA GPU: a CPU-only torch build (and how to get
    a CUDA one), or a CUDA build that finds no usable GPU or driver."""
    if torch.version.cuda is None:
        return (f'the torch in {sys.prefix} ({torch.__version__}) is a '
                'CPU-only build. Install a CUDA build (docs/install.md, '
                '"GPU machines"): make TORCH_PIP_ARGS="--index-url '
                '<PyTorch\'s CUDA wheel index>" install; or set device: cpu '
                'to run on the CPU (slowly).')
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    hidden = (f' CUDA_VISIBLE_DEVICES={visible!r} hides the GPUs.'
              if visible is not None and not visible.strip(' ,') else '')
    return (f'torch {torch.__version__} is a CUDA {torch.version.cuda} '
            'build but finds no usable GPU: no GPU, no NVIDIA driver, or '
            'a driver older than that CUDA (check nvidia-smi).' + hidden)


def torch_device_of(device: str) -> str:
    """torch's name of the device :func:`select_device` chose: the first
    GPU for ``cuda``."""
    return 'cuda:0' if device == 'cuda' else 'cpu'


def processor_name() -> str:
    """The CPU's name as the platform reports it."""
    return platform.processor() or platform.machine()


def device_name(device: str = None) -> str:
    """What a measurement ran on, for benchmark records: the GPU's name on
    CUDA, else ``CPU (processor, N threads)``."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda'):
        return torch.cuda.get_device_name(0)
    return f'CPU ({processor_name()}, {torch.get_num_threads()} threads)'


def synchronize(device: str = None) -> None:
    """Wait for the GPU's queued work (for timing); nothing on the CPU."""
    if (device is None and torch.cuda.is_available()) or \
            str(device).startswith('cuda'):
        torch.cuda.synchronize()


def release_memory(device: str) -> None:
    """On a GPU: what is no longer referenced (an earlier runner's or
    engine's model, held in reference cycles until the collector runs)
    given back, and the peak counter restarted from what stays resident,
    so that a measurement's peak memory is its own."""
    if str(device).startswith('cuda'):
        import gc
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def parse_bool(text) -> bool:
    """``true``/``false`` (as DVC writes params.yaml booleans into a
    command), also ``1``/``0``, ``yes``/``no``."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ('true', '1', 'yes'):
        return True
    if value in ('false', '0', 'no'):
        return False
    raise ValueError(f'not a boolean: {text!r}')
