"""Training speed-ups that leave the paper's recipe (section 4) as it is:
each changes how a step is computed, not what it computes, and is off
unless asked for (``tools/train.py --speedups``, ``train.speedups`` in
params.yaml). ``tests/runner/test_speedups.py`` checks that one
optimisation step with each gives the plain step's loss and weights.

- ``channels-last``: the model's weights and its input batches in
  channels-last memory layout (what cuDNN's fastest convolutions use);
- ``non-blocking``: batches copied to the GPU without blocking the host
  (the loaders already pin their memory on a GPU);
- ``foreach-adam``: Adam's update for all parameters at once rather than
  one tensor at a time (``fused`` on a GPU, ``foreach`` elsewhere).
"""
from typing import Iterable, List

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.models import SegDataPreProcessor
from mmseg.registry import HOOKS, MODELS

from fashionseg.errors import UsageError

SPEEDUPS = ('channels-last', 'non-blocking', 'foreach-adam')


def parse_speedups(text) -> List[str]:
    """``channels-last,non-blocking`` (or a list) as a checked list; ``''``
    and ``none`` for none."""
    if isinstance(text, (list, tuple)):
        names = [str(n).strip() for n in text]
    else:
        names = [n.strip() for n in str(text).split(',')]
    names = [n for n in names if n and n != 'none']
    unknown = [n for n in names if n not in SPEEDUPS]
    if unknown:
        raise UsageError(f'unknown training speed-up {unknown[0]!r}; one of '
                         f'{", ".join(SPEEDUPS)}')
    return list(dict.fromkeys(names))


@MODELS.register_module()
class FastSegDataPreProcessor(SegDataPreProcessor):
    """MMSegmentation's ``SegDataPreProcessor`` with non-blocking copies
    to the device and, optionally, channels-last batches; the values are
    the same."""

    def __init__(self, non_blocking: bool = False,
                 channels_last: bool = False, **kwargs):
        super().__init__(**kwargs)
        # mmengine's BaseDataPreprocessor copies with this attribute;
        # SegDataPreProcessor does not pass the argument on to it.
        self._non_blocking = non_blocking
        self.channels_last = channels_last

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if self.channels_last:
            data['inputs'] = data['inputs'].contiguous(
                memory_format=torch.channels_last)
        return data


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Puts the model's weights in channels-last layout before training
    (the optimiser is built on the same parameters, which keep their
    identity)."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        model.to(memory_format=torch.channels_last)


def apply_speedups(cfg: Config, names: Iterable[str]) -> List[str]:
    """Turn ``names`` on in a training config; recorded as
    ``cfg.training_speedups``."""
    names = parse_speedups(list(names))
    preprocessor = cfg.model.data_preprocessor
    if {'channels-last', 'non-blocking'} & set(names):
        if preprocessor.get('type') not in ('SegDataPreProcessor',
                                            'FastSegDataPreProcessor'):
            raise UsageError(
                f'the speed-ups {names} need MMSegmentation\'s '
                f'SegDataPreProcessor, not {preprocessor.get("type")}')
        preprocessor.type = 'FastSegDataPreProcessor'
        preprocessor.non_blocking = 'non-blocking' in names
        preprocessor.channels_last = 'channels-last' in names
    if 'channels-last' in names:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='ChannelsLastHook')]
    if 'foreach-adam' in names:
        optimizer = cfg.optim_wrapper.optimizer
        if optimizer.get('type') not in ('Adam', 'AdamW'):
            raise UsageError('foreach-adam needs an Adam optimiser, not '
                             f'{optimizer.get("type")}')
        if torch.cuda.is_available():
            optimizer.fused = True
        else:
            optimizer.foreach = True
    cfg.training_speedups = names
    return names
