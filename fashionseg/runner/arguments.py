"""What every mmengine ``Runner`` tool takes on its command line
(``tools/train.py``, ``tools/test.py``)."""
import argparse

from mmengine.config import DictAction

from fashionseg.errors import UsageError
from fashionseg.utils.cli import add_device_argument


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` (KEY=VALUE pairs), with one line for a
    pair that has no ``=`` instead of a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if '=' not in value:
                raise UsageError(
                    f'{option_string} takes KEY=VALUE pairs; '
                    f'{value!r} has no "=" (e.g. train_cfg.max_epochs=1)')
        super().__call__(parser, namespace, values, option_string)


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
