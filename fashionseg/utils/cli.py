"""Arguments the command-line tools share, declared once."""
import argparse

from mmengine.config import DictAction

from fashionseg.utils.device import DEVICES


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (:func:`fashionseg.utils.device.
    select_device`)."""
    parser.add_argument('--device', choices=DEVICES, default='auto',
                        help='cpu hides any GPU; cuda fails if there is none '
                        '(default: a GPU if there is one)')


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """What every mmengine ``Runner`` tool takes, as MMSegmentation's own
    ``tools/train.py`` and ``tools/test.py`` name them: ``--data-root``,
    ``--device``, ``--cfg-options``, ``--launcher``, ``--local_rank``."""
    parser.add_argument('--data-root', help='converted dataset folder to '
                        'use instead of the config\'s data_root')
    add_device_argument(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value (mmengine syntax)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
