"""Choosing the device a pipeline stage runs on (``device`` in
params.yaml): ``cpu`` hides every GPU, ``cuda`` insists on one, ``auto``
takes a GPU where there is one (mmengine's default)."""
import os

import torch

DEVICES = ('auto', 'cpu', 'cuda')


def select_device(device: str) -> str:
    """Apply ``device`` before anything touches CUDA; returns the device
    that will be used (``cpu`` or ``cuda``)."""
    if device not in DEVICES:
        raise SystemExit(f'error: device must be one of {DEVICES}, not '
                         f'{device!r}')
    if device == 'cpu':
        # mmengine places models on CUDA whenever it is available; hiding
        # the GPUs is the one switch it honours everywhere.
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
        return 'cpu'
    if torch.cuda.is_available():
        return 'cuda'
    if device == 'cuda':
        raise SystemExit(
            'error: device cuda was asked for (params.yaml: device) but '
            'torch sees no CUDA GPU (torch ' + torch.__version__ + '). '
            'Install a CUDA build of torch (README, "GPU machines"), or set '
            'device: cpu to run on the CPU (slowly).')
    return 'cpu'


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
