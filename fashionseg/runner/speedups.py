"""Training speed-ups that leave the paper's recipe (section 4) as it is:
each changes how a step is computed, not what it computes, and is off
unless asked for (``tools/train.py --speedups``, ``train.speedups`` in
params.yaml). ``tests/runner/test_speedups.py`` checks that one
optimisation step with each gives the plain step's loss and weights.

- ``channels-last``: the model's weights and its input batches in
  channels-last memory layout (what cuDNN's fastest convolutions use);
- ``non-blocking``: batches copied to the GPU without blocking the host:
  the loaders pin the label maps too (torch's loader pins the images
  but passes MMSegmentation's data samples by, and a copy from unpinned
  memory makes the host wait), and the copies do not wait;
- ``foreach-adam``: Adam's update for all parameters at once rather than
  one tensor at a time (``fused`` on a GPU, ``foreach`` elsewhere);
- ``fp32-resize``: under bf16 autocast (``--amp``), the decode heads'
  bilinear resizes made in MMSegmentation's ``_transform_inputs`` (the
  paper head's pyramid levels to P2's size) and in the loss (the scores
  to the label size; semantic FPN's and PSPNet's own in-head resizes stay
  as they are), and the loss, in fp32: autocast leaves ``interpolate`` in
  the input's bf16, whose backward accumulates with slow bf16 atomics;
  without autocast it changes nothing;
- ``no-host-sync``: no step waits for the GPU: the training accuracy
  MMSegmentation logs is computed with masked sums rather than boolean
  indexing (whose output size the host must read), and the logged values
  stay on the device until the logger prints them, then are read in one
  copy (mmengine reads each as a Python number every iteration); the
  logs and the step are the same;
- ``compile``: ``torch.compile`` of the backbone, the neck and the decode
  heads' forward (not mmengine's whole ``train_step``, whose data
  handling and logging would break the graph), in place, so that
  checkpoints keep their keys; one compilation per input shape.
"""
import difflib
import functools
import types
from typing import Iterable, List, Optional
from unittest import mock

import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook, LoggerHook, RuntimeInfoHook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import FUNCTIONS, MODEL_WRAPPERS
from mmengine.structures import BaseDataElement
from mmengine.utils import apply_to
from mmseg.models import SegDataPreProcessor
from mmseg.models.decode_heads import decode_head
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy
from mmseg.registry import HOOKS, MODELS

from fashionseg.errors import UsageError
from fashionseg.runner.run_config import add_custom_hooks

SPEEDUPS = ('channels-last', 'non-blocking', 'foreach-adam', 'fp32-resize',
            'no-host-sync', 'compile')
# The speed-ups that compute the same step as the plain path (within
# rounding); compile's one step is checked against it within the memory
# layouts' tolerance, in a slow test, since it compiles for minutes
# (tests/runner/test_speedups.py).
SAME_STEP = ('channels-last', 'non-blocking', 'foreach-adam', 'fp32-resize',
             'no-host-sync')


def parse_speedups(text) -> List[str]:
    """``channels-last,non-blocking`` (or a list) as a checked list; ``''``
    and ``none`` for none."""
    if isinstance(text, (list, tuple)):
        names = [str(n).strip() for n in text]
    else:
        names = [n.strip() for n in str(text).split(',')]
    # (YAML's null reaches a command line as None.)
    names = [n for n in names if n and n.lower() not in ('none', 'null')]
    unknown = [n for n in names if n not in SPEEDUPS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SPEEDUPS, n=1)
        raise UsageError(
            f'unknown training speed-up {unknown[0]!r}'
            + (f' (did you mean {close[0]!r}?)' if close else '')
            + f' in {text!r} (--speedups; train.speedups in params.yaml '
            f'for the pipeline): one of {", ".join(SPEEDUPS)}, '
            'comma-separated, or none')
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
        data = self.cast_data(data)
        if self.channel_conversion and data['inputs'][0].size(0) == 3:
            # The same values as MMSegmentation's ``image[[2, 1, 0]]``,
            # whose index list is copied to the device with a blocking
            # copy, making the host wait for the GPU at every image.
            data = dict(data, inputs=[image.flip(0)
                                      for image in data['inputs']])
            self.channel_conversion = False
            try:
                data = super().forward(data, training)
            finally:
                self.channel_conversion = True
        else:
            data = super().forward(data, training)
        if self.channels_last:
            data['inputs'] = data['inputs'].contiguous(
                memory_format=torch.channels_last)
        return data


def _pinned(element: BaseDataElement) -> BaseDataElement:
    """A copy of ``element`` whose tensors (at any depth: a data
    sample's ``gt_sem_seg`` is a ``PixelData``) are in pinned memory."""
    pinned = element.new()
    for key, value in element.items():
        if isinstance(value, torch.Tensor):
            pinned.set_data({key: value.pin_memory()})
        elif isinstance(value, BaseDataElement):
            pinned.set_data({key: _pinned(value)})
    return pinned


class PinnableDataSamples(list):
    """A batch's data samples that torch's loader pins with the images
    (it pins whatever has a ``pin_memory`` method, and passes mmengine's
    data elements by)."""

    def pin_memory(self) -> 'PinnableDataSamples':
        return PinnableDataSamples(_pinned(sample) for sample in self)


@FUNCTIONS.register_module()
def pinnable_pseudo_collate(data_batch):
    """mmengine's ``pseudo_collate`` (the configs' default), with the
    data samples in a :class:`PinnableDataSamples`."""
    batch = pseudo_collate(data_batch)
    if isinstance(batch, dict) and isinstance(batch.get('data_samples'),
                                              list):
        batch['data_samples'] = PinnableDataSamples(batch['data_samples'])
    return batch


def pin_label_maps(cfg: Config) -> None:
    """Under ``non-blocking`` (in ``cfg.training_speedups``), the
    training loader's data samples pinned with its images
    (:func:`pinnable_pseudo_collate`); a collate function of the user's
    own is left as it is. Apart from :func:`apply_speedups`: set after
    the whole config's fingerprint, which runs of earlier revisions
    stored without it (fashionseg.runner.run_state)."""
    loader = cfg.get('train_dataloader')
    if 'non-blocking' not in cfg.get('training_speedups', []) or not loader:
        return
    if loader.get('collate_fn', dict(type='pseudo_collate')) == dict(
            type='pseudo_collate'):
        loader.collate_fn = dict(type='pinnable_pseudo_collate')


def _bare(model):
    return model.module if is_model_wrapper(model) else model


def _decode_heads(model) -> List[BaseDecodeHead]:
    """The decode heads of ``model`` (auxiliary ones included)."""
    return [m for m in _bare(model).modules()
            if isinstance(m, BaseDecodeHead)]


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Puts the model's weights in channels-last layout before training
    (the optimiser is built on the same parameters, which keep their
    identity)."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        _bare(runner.model).to(memory_format=torch.channels_last)


# In mmengine's own registry: the Runner looks wrappers up there by name,
# without MMSegmentation's scope.
@MODEL_WRAPPERS.register_module()
class ChannelsLastDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper around the model put in channels-last layout
    first: DDP lays its gradient buckets out like the parameters when it
    is built, before :class:`ChannelsLastHook` runs, and would otherwise
    copy every gradient between layouts at every step."""

    def __init__(self, module, **kwargs):
        super().__init__(
            module=module.to(memory_format=torch.channels_last), **kwargs)


def match_state_layouts(optimizer: torch.optim.Optimizer) -> int:
    """Each per-parameter state tensor of ``optimizer`` (Adam's moments)
    in its parameter's memory layout; returns how many were changed.
    mmengine resumes the optimiser before the hooks' ``before_train``, so
    a run resumed with another layout than the checkpoint's (channels-last
    turned on or off) has moments laid out unlike their parameters, which
    fused Adam refuses on a GPU and miscomputes on the CPU."""
    changed = 0
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape \
                    and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype
                                              ).copy_(value)
                changed += 1
    return changed


def restore_built_update(optimizer: torch.optim.Optimizer) -> int:
    """Each parameter group's ``fused`` and ``foreach`` as this run built
    the optimiser (its ``defaults``); returns how many were changed.
    torch's ``load_state_dict`` takes them from the checkpoint with the
    other hyperparameters, so that a run resumed with ``foreach-adam``
    turned on or off would otherwise update as the checkpoint's run did
    while its record said otherwise."""
    changed = 0
    for group in optimizer.param_groups:
        before = changed
        for key in ('fused', 'foreach'):
            if key in optimizer.defaults and \
                    group.get(key) != optimizer.defaults[key]:
                group[key] = optimizer.defaults[key]
                changed += 1
        if changed == before:
            continue
        # Where the step counts live follows the update, as torch's
        # load_state_dict places them: on the parameter's device, in
        # fp32, for a fused or capturable update; on the host otherwise
        # (where a foreach update would read each back from the GPU).
        on_device = bool(group.get('fused') or group.get('capturable'))
        for param in group['params']:
            step = optimizer.state.get(param, {}).get('step')
            if torch.is_tensor(step):
                optimizer.state[param]['step'] = step.to(
                    device=param.device if on_device else 'cpu',
                    dtype=torch.float32)
    return changed


@HOOKS.register_module()
class OptimizerStateLayoutHook(Hook):
    """Before training, after a resume and after the weights took their
    layout (:class:`ChannelsLastHook`): the optimiser's state in its
    parameters' layout (:func:`match_state_layouts`) and its update as
    this run asked for (:func:`restore_built_update`). Every training
    run has it (:func:`fashionseg.runner.training.configure_training`).
    """
    priority = 'HIGH'

    def before_train(self, runner) -> None:
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        if optimizer is not None:
            match_state_layouts(optimizer)
            restore_built_update(optimizer)


def _in_fp32(method):
    """``method`` with its floating-point tensor arguments (and those in
    a list) in fp32 and autocast off."""
    def to_fp32(value):
        if torch.is_tensor(value) and value.is_floating_point():
            return value.float()
        if isinstance(value, (list, tuple)):
            return type(value)(to_fp32(v) for v in value)
        return value

    def device_of(value):
        if torch.is_tensor(value):
            return value.device.type
        if isinstance(value, (list, tuple)):
            return next(filter(None, map(device_of, value)), None)
        return None

    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        device = device_of(args) or 'cpu'
        with torch.autocast(device, enabled=False):
            return method(*map(to_fp32, args),
                          **{k: to_fp32(v) for k, v in kwargs.items()})
    return wrapped


def resizes_in_fp32(model) -> int:
    """Every decode head of ``model`` resizes and computes its loss in
    fp32; returns how many heads. MMSegmentation's heads call its
    ``resize`` inside ``_transform_inputs`` and ``loss_by_feat``, and
    autocast cannot be told to keep ``interpolate`` in fp32, so these two
    methods are wrapped on each head instance (no class is changed)."""
    heads = _decode_heads(model)
    for head in heads:
        if head.input_transform == 'resize_concat':
            head._transform_inputs = _in_fp32(head._transform_inputs)
        head.loss_by_feat = _in_fp32(head.loss_by_feat)
    return len(heads)


@HOOKS.register_module()
class Fp32ResizeHook(Hook):
    """:func:`resizes_in_fp32` before training."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        resizes_in_fp32(runner.model)


def accuracy_without_sync(pred, target, topk=1, thresh=None,
                          ignore_index=None):
    """MMSegmentation's ``accuracy`` (the same value, to the bit) without
    its boolean indexing, whose output size the host must wait for; the
    cases the heads do not use go to the original."""
    if topk != 1 or thresh is not None or ignore_index is None \
            or pred.size(0) == 0:
        return accuracy(pred, target, topk, thresh, ignore_index)
    eps = torch.finfo(torch.float32).eps
    valid = target != ignore_index
    label = pred.topk(1, dim=1)[1].squeeze(1)
    correct = ((label == target) & valid).sum().float().reshape(1) + eps
    # As the original: 100 / (valid pixels + eps) in double, applied to
    # the float32 count (the scalar is rounded to float32 first).
    return correct * (100.0 / (valid.sum().double() + eps)).float()


def _with_accuracy_without_sync(loss_by_feat):
    @functools.wraps(loss_by_feat)
    def wrapped(*args, **kwargs):
        # BaseDecodeHead.loss_by_feat calls its module's ``accuracy``
        # directly (no argument or attribute chooses it), so the name is
        # swapped for the duration of the call only.
        with mock.patch.object(decode_head, 'accuracy',
                               accuracy_without_sync):
            return loss_by_feat(*args, **kwargs)
    return wrapped


def losses_without_sync(model) -> int:
    """Every decode head of ``model`` computes its logged accuracy with
    :func:`accuracy_without_sync`; returns how many heads."""
    heads = _decode_heads(model)
    for head in heads:
        head.loss_by_feat = _with_accuracy_without_sync(head.loss_by_feat)
    return len(heads)


def logger_hook(runner) -> Optional[LoggerHook]:
    """The runner's ``LoggerHook``, if it has one."""
    return next((h for h in runner.hooks if isinstance(h, LoggerHook)),
                None)


def logged_iteration(hook: Hook, runner, batch_idx: int,
                     logger: Optional[LoggerHook]) -> bool:
    """Whether ``logger`` reads this training iteration's values: every
    ``interval`` iterations and at the end of each epoch (every iteration
    where there is no logger)."""
    return logger is None or logger.every_n_inner_iters(
        batch_idx, logger.interval) or hook.end_of_epoch(
            runner.train_dataloader, batch_idx)


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """mmengine's ``RuntimeInfoHook``, but the losses and accuracy each
    training iteration returns are kept on the device and handed to the
    message hub (as the same Python numbers, in the same order) only where
    the ``LoggerHook`` is about to read them, into a checkpoint's copy of
    the message hub, and at the end of each epoch: one copy to the
    host per logged iteration instead of one wait per value and
    iteration. The smoothed values the logger prints are therefore
    unchanged."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._pending = []
        self._logger = logger_hook(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            # Detached: the autograd graph is not kept until the flush.
            self._pending.extend(
                (key, value.detach() if torch.is_tensor(value) else value)
                for key, value in outputs.items())
        if logged_iteration(self, runner, batch_idx, self._logger):
            self.flush(runner)

    def flush(self, runner) -> None:
        """Everything pending into the message hub, read from the device
        in one copy."""
        pending, self._pending = getattr(self, '_pending', []), []
        on_device = [i for i, (_, value) in enumerate(pending)
                     if torch.is_tensor(value) and value.numel() == 1
                     and value.is_floating_point()]
        values = [value for _, value in pending]
        if on_device:
            # float64 holds every float32 and bf16 value exactly, so the
            # numbers are those ``.item()`` gives one at a time.
            numbers = torch.stack([pending[i][1].reshape(()).double()
                                   for i in on_device]).tolist()
            for i, number in zip(on_device, numbers):
                values[i] = number
        for (key, _), value in zip(pending, values):
            runner.message_hub.update_scalar(f'train/{key}', value)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # The runner put the message hub in ``checkpoint`` before this
        # call; a save within an epoch gets it again with what was pending.
        if getattr(self, '_pending', None):
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(
                runner.message_hub.state_dict(),
                lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)


@HOOKS.register_module()
class NoHostSyncHook(Hook):
    """:func:`losses_without_sync` before training."""
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        losses_without_sync(runner.model)


def compile_model(model) -> List[str]:
    """``torch.compile`` of the backbone, the neck and each decode head's
    forward, in place (parameters and state-dict keys unchanged); returns
    what was compiled. The heads' ``loss`` calls ``self.forward`` directly,
    so the method itself is compiled there."""
    model, compiled = _bare(model), []
    # torch's default shape policy, not the engine's one graph per shape
    # (dynamic=False): training and its validation see several shapes
    # (the last, smaller batch; CCP's three padded sizes; validation's
    # batches), and past dynamo's cache of graphs a fixed-shape compile
    # falls back to eager without a word. The main shape keeps its
    # specialised graph, compiled first.
    for name in ('backbone', 'neck'):
        module = getattr(model, name, None)
        if module is not None:
            module.compile()
            compiled.append(name)
    for name, head in model.named_modules():
        if isinstance(head, BaseDecodeHead):
            # The compiled function bound as a method: a deep copy of the
            # head (an EMA model, the validation engine's copies) binds it
            # to the copy, where a compiled bound method would keep
            # running the original head.
            head.forward = types.MethodType(
                torch.compile(type(head).forward), head)
            compiled.append(name)
    return compiled


@HOOKS.register_module()
class CompileHook(Hook):
    """:func:`compile_model` before training, after the layout and fp32
    resizes are in place."""
    priority = 'HIGH'

    def before_train(self, runner) -> None:
        runner.logger.info('compiled: ' + ', '.join(compile_model(
            runner.model)))


def _channels_last_ddp(cfg: Config) -> None:
    """Under a distributed launcher, DDP wraps the model in channels-last
    layout (:class:`ChannelsLastDistributedDataParallel`); with mmengine's
    default wrapper's settings where the config names no wrapper (or
    mmengine's own)."""
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', 'MMDistributedDataParallel') == \
            'MMDistributedDataParallel':
        cfg.model_wrapper_cfg = dict(
            wrapper, type='ChannelsLastDistributedDataParallel')


def apply_speedups(cfg: Config, names: Iterable[str],
                   cfg_options: Optional[dict] = None) -> List[str]:
    """Turn ``names`` on in a training config; recorded as
    ``cfg.training_speedups``. ``cfg_options`` are the user's overrides,
    which the speed-ups' own settings leave as they are."""
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
    if {'channels-last', 'foreach-adam'} & set(names):
        add_custom_hooks(cfg, dict(type='OptimizerStateLayoutHook'))
    if 'channels-last' in names:
        add_custom_hooks(cfg, dict(type='ChannelsLastHook'))
        _channels_last_ddp(cfg)
        # cuDNN's autotuning of channels-last convolutions did not finish
        # the first fp32 batch-5 iteration of the paper's FPN in 35 s, nor
        # the first bf16 one in 60 s, for a single 600 x 400 shape (one
        # H200, cuDNN 9.19); its heuristics then train at 173 images/s in
        # bf16. An explicit --cfg-options env_cfg.cudnn_benchmark wins.
        if 'env_cfg.cudnn_benchmark' not in (cfg_options or {}):
            cfg.setdefault('env_cfg', {})['cudnn_benchmark'] = False
    if 'foreach-adam' in names:
        optimizer = cfg.optim_wrapper.optimizer
        if optimizer.get('type') not in ('Adam', 'AdamW'):
            raise UsageError('foreach-adam needs an Adam optimiser, not '
                             f'{optimizer.get("type")}')
        if torch.cuda.is_available():
            optimizer.fused = True
        else:
            optimizer.foreach = True
    if 'fp32-resize' in names:
        add_custom_hooks(cfg, dict(type='Fp32ResizeHook'))
    if 'no-host-sync' in names:
        add_custom_hooks(cfg, dict(type='NoHostSyncHook'))
        cfg.setdefault('default_hooks', {})['runtime_info'] = dict(
            type='DeferredRuntimeInfoHook')
    if 'compile' in names:
        add_custom_hooks(cfg, dict(type='CompileHook'))
    cfg.training_speedups = names
    return names
