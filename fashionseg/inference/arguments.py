"""The inference engine's settings on a tool's command line
(``tools/test.py``, ``tools/segment.py``)."""
import argparse
from typing import Tuple

import torch

from fashionseg.errors import UsageError
from fashionseg.inference.settings import (COMPILE_MODES, DEVICE_DEFAULTS,
                                           MAX_BATCH_SIZE, PRECISIONS,
                                           InferenceSettings)

_SETTING_FLAGS = ('precision', 'channels_last', 'fold_bn', 'compile')


def add_inference_arguments(parser: argparse.ArgumentParser,
                            batch_size: int = 1) -> None:
    """The inference engine's settings (:class:`fashionseg.inference.
    settings.InferenceSettings`): ``--batch-size``, ``--precision``,
    ``--channels-last``, ``--fold-bn``, ``--compile``. Without any of the
    last four, a GPU runs its default fast setting, checked against eager
    fp32 (:func:`tool_settings`)."""
    parser.add_argument('--batch-size', type=int, default=None,
                        help=f'images per forward pass (default '
                        f'{batch_size}, or the GPU default setting\'s); '
                        'labels do not depend on it')
    parser.add_argument('--precision', choices=tuple(PRECISIONS),
                        help='fp32 (TF32 off, the reference; the default '
                        'on a CPU), tf32, or autocast to bf16 / fp16. '
                        'Without this, --channels-last, --fold-bn and '
                        f'--compile, a GPU runs {DEVICE_DEFAULTS["cuda"]}'
                        ' if it labels the first batch as eager fp32 does '
                        '(at least 99.5%% of its pixels), else eager fp32')
    parser.add_argument('--channels-last', action='store_true',
                        default=None, help='channels-last memory layout')
    parser.add_argument('--fold-bn', action='store_true', default=None,
                        help='fold each batch norm into the convolution '
                        'before it')
    parser.add_argument('--compile', choices=COMPILE_MODES,
                        help='torch.compile mode (default none; '
                        'reduce-overhead and max-autotune use CUDA graphs '
                        'on a GPU)')
    parser.set_defaults(default_batch_size=batch_size)


def tool_settings(args: argparse.Namespace, device: str
                  ) -> Tuple[InferenceSettings, bool]:
    """The engine settings the arguments of :func:`add_inference_arguments`
    ask for on ``device``, and whether they must first be checked against
    eager fp32 (:func:`fashionseg.inference.segmenter.checked_segmenter`):
    on a GPU with none of the setting flags, the device's default fast
    setting, checked; otherwise exactly what the flags say (eager fp32 by
    default)."""
    chosen = any(getattr(args, flag) is not None for flag in _SETTING_FLAGS)
    if args.batch_size is not None and not \
            1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise UsageError(f'--batch-size must be between 1 and '
                         f'{MAX_BATCH_SIZE}, not {args.batch_size}')
    try:
        if torch.device(device).type == 'cuda' and not chosen:
            default = InferenceSettings.device_default(device)
            if args.batch_size is not None:
                default = InferenceSettings.from_dict(
                    dict(default.as_dict(), batch_size=args.batch_size))
            return default, not default.is_reference
        return InferenceSettings(
            args.precision or 'fp32', bool(args.channels_last),
            args.compile or 'none',
            args.default_batch_size if args.batch_size is None
            else args.batch_size,
            bool(args.fold_bn)), False
    except ValueError as error:
        raise UsageError(str(error)) from None
