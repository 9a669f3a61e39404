"""Arguments the command-line tools share, declared once."""
import argparse

from mmengine.config import DictAction

from fashionseg.utils.device import DEVICES


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` (KEY=VALUE pairs), with one line for a
    pair that has no ``=`` instead of a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if '=' not in value:
                raise SystemExit(
                    f'error: {option_string} takes KEY=VALUE pairs; '
                    f'{value!r} has no "=" (e.g. train_cfg.max_epochs=1)')
        super().__call__(parser, namespace, values, option_string)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (:func:`fashionseg.utils.device.
    select_device`)."""
    parser.add_argument('--device', choices=DEVICES, default='auto',
                        help='cpu hides any GPU; cuda fails if there is none '
                        '(default: a GPU if there is one)')


def add_max_images_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-images N``: the first N images of each split (a short real
    run; ``tools/train.py``, ``test.py``, ``crf.py`` and ``figures.py``
    take it alike and record it)."""
    parser.add_argument('--max-images', type=_positive, metavar='N',
                        help='use only the first N images of each split '
                        '(a short run; recorded with the results)')


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {value}')
    return value


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """What every mmengine ``Runner`` tool takes, as MMSegmentation's own
    ``tools/train.py`` and ``tools/test.py`` name them: ``--data-root``,
    ``--device``, ``--cfg-options``, ``--launcher``, ``--local_rank``."""
    parser.add_argument('--data-root', help='converted dataset folder to '
                        'use instead of the config\'s data_root')
    add_device_argument(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=ConfigOptionsAction,
        help='override settings in the config, key=value (mmengine syntax)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_inference_arguments(parser: argparse.ArgumentParser,
                            batch_size: int = 1) -> None:
    """The inference engine's settings (:class:`fashionseg.engine.
    segmenter.InferenceSettings`): ``--batch-size``, ``--precision``,
    ``--channels-last``, ``--compile``."""
    parser.add_argument('--batch-size', type=int, default=batch_size,
                        help=f'images per forward pass (default '
                        f'{batch_size}); labels do not depend on it')
    from fashionseg.engine.inference_settings import COMPILE_MODES, PRECISIONS

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
    from fashionseg.engine.inference_settings import InferenceSettings

    try:
        return InferenceSettings(args.precision, args.channels_last,
                                 args.compile, args.batch_size)
    except ValueError as error:
        raise SystemExit(f'error: {error}')
