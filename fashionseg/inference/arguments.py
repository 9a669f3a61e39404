"""The inference engine's settings on a tool's command line
(``tools/test.py``, ``tools/segment.py``)."""
import argparse

from fashionseg.errors import UsageError
from fashionseg.inference.settings import (COMPILE_MODES, PRECISIONS,
                                           InferenceSettings)


def add_inference_arguments(parser: argparse.ArgumentParser,
                            batch_size: int = 1) -> None:
    """The inference engine's settings (:class:`fashionseg.inference.
    segmenter.InferenceSettings`): ``--batch-size``, ``--precision``,
    ``--channels-last``, ``--compile``."""
    parser.add_argument('--batch-size', type=int, default=batch_size,
                        help=f'images per forward pass (default '
                        f'{batch_size}); labels do not depend on it')
    parser.add_argument('--precision', choices=tuple(PRECISIONS),
                        default='fp32', help='fp32 (TF32 off, the '
                        'reference), tf32, or autocast to bf16 / fp16')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last memory layout')
    parser.add_argument('--compile', choices=COMPILE_MODES,
                        default='none', help='torch.compile mode '
                        '(reduce-overhead and max-autotune use CUDA graphs '
                        'on a GPU)')


def inference_settings(args: argparse.Namespace):
    """The engine settings the arguments of
    :func:`add_inference_arguments` ask for."""
    try:
        return InferenceSettings(args.precision, args.channels_last,
                                 args.compile, args.batch_size)
    except ValueError as error:
        raise UsageError(str(error)) from None
