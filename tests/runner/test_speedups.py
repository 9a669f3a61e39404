"""The training speed-ups compute the same step: one optimisation step
of the paper's FPN (the demo's narrow one) with each speed-up gives the
plain step's loss and updated weights, and the configs and the record
say which were on."""
import copy
import math
import traceback

import pytest
import torch
from conftest import REPO
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.models.losses import accuracy
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import fashionseg.mmseg_modules  # noqa: F401 (registers the speed-ups)
from fashionseg.errors import UsageError
from fashionseg.runner.mixed_precision import BF16OptimWrapper
from fashionseg.runner.speedups import (SAME_STEP, SPEEDUPS,
                                        DeferredRuntimeInfoHook,
                                        accuracy_without_sync, apply_speedups,
                                        compile_model, losses_without_sync,
                                        match_state_layouts, parse_speedups,
                                        pin_label_maps, resizes_in_fp32,
                                        restore_built_update)

CONFIG = str(REPO / 'mmseg_configs' / 'demo' / 'fpn_x101_ccp.py')


def _batch(seed=0, size=(70, 50), classes=59):
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, *size), dtype=torch.uint8,
                                    generator=generator))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, classes, (1, *size), generator=generator))
        sample.set_metainfo(dict(img_shape=size, ori_shape=size,
                                 pad_shape=size))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _step(speedups, sgd=False, amp=False):
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    apply_speedups(cfg, speedups)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    if 'channels-last' in speedups:
        model.to(memory_format=torch.channels_last)
    if 'fp32-resize' in speedups:
        resizes_in_fp32(model)
    if 'no-host-sync' in speedups:
        losses_without_sync(model)
    if 'compile' in speedups:
        compile_model(model)
    optimizer = cfg.optim_wrapper.optimizer
    kwargs = {k: v for k, v in optimizer.items() if k != 'type'}
    # Adam's first step moves each weight by about the learning rate in
    # the direction of its gradient's sign, so a gradient within rounding
    # of zero (zero-initialised norms have many) can flip a whole step:
    # the layouts are compared through a plain SGD step, which moves each
    # weight in proportion to its gradient.
    optim = torch.optim.SGD(model.parameters(), lr=0.01) if sgd else \
        getattr(torch.optim, optimizer.type)(model.parameters(), **kwargs)
    wrapper = BF16OptimWrapper(optim) if amp else OptimWrapper(optim)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = model.train_step(copy.deepcopy(_batch()), wrapper)
    finally:
        torch.set_num_threads(threads)
    return ({k: v.item() for k, v in losses.items()},
            {k: v.detach().contiguous() for k, v in
             model.state_dict().items()})


@pytest.fixture(scope='module')
def plain():
    return {sgd: _step([], sgd) for sgd in (False, True)}


# Summation order differs between memory layouts (and with the number of
# threads; the steps run on one, so that the figures repeat). Measured on
# this project's CPU: weights after the SGD step within 5e-5 (the first
# convolution, whose gradient sums over every input position; its weights
# are up to 0.18), the norms' running statistics within 3e-4 relative and
# 1e-4 absolute (channels-last batch norm reduces in another order and
# estimates the variance by another algorithm).
def _tolerance(key, same_layout=False):
    if same_layout:
        # Adam for all parameters at once against one at a time: the same
        # arithmetic, and Adam moves a weight by up to the learning rate
        # (1e-4), so the tolerance is far below it.
        return dict(rtol=1e-6, atol=1e-7)
    if 'running_' in key:
        return dict(rtol=1e-3, atol=2e-4)
    return dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('speedup', SAME_STEP)
def test_each_speedup_gives_the_plain_step(plain, speedup):
    sgd = speedup not in ('foreach-adam', 'fp32-resize', 'no-host-sync')
    losses, weights = _step([speedup], sgd)
    reference_losses, reference_weights = plain[sgd]
    for key, value in reference_losses.items():
        assert losses[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key, value in reference_weights.items():
        torch.testing.assert_close(weights[key], value, msg=key,
                                   **_tolerance(key, same_layout=not sgd))


@pytest.mark.slow  # inductor compiles the training graphs: about 80 s
def test_a_compiled_step_gives_the_plain_step(plain):
    """``compile`` fuses operations, so it rounds otherwise than eager
    does; measured here: the same loss and every weight after the SGD
    step within 1e-5 of eager's, inside the layouts' tolerance."""
    losses, weights = _step(['compile'], sgd=True)
    assert losses['decode.loss_ce'] == pytest.approx(
        plain[True][0]['decode.loss_ce'], rel=1e-5)
    for key, value in plain[True][1].items():
        torch.testing.assert_close(weights[key], value, msg=key,
                                   **_tolerance(key))


@pytest.mark.parametrize('speedups', [[], ['fp32-resize']])
def test_a_bf16_step_computes_the_fp32_loss_within_bf16_rounding(
        plain, speedups):
    """bf16 mixed precision (``--amp``) is not the same step: autocast
    rounds the activations to bf16's 8 significant bits, and the backward
    pass through the network amplifies that rounding (measured here: the
    update of all weights at 0.22 cosine with fp32's at initialisation,
    0.90 after 30 Adam steps on real photos; fp32's layouts agree to
    1e-5). One step's loss is fp32's within bf16's rounding (2^-8); what
    bf16 learns is compared over the short trainings below."""
    losses, weights = _step(speedups, sgd=True, amp=True)
    assert losses['decode.loss_ce'] == pytest.approx(
        plain[True][0]['decode.loss_ce'], rel=2**-8)
    assert all(torch.isfinite(value).all() for value in weights.values()
               if value.is_floating_point())
    # The step moved the weights (not a step skipped as an fp16 loss
    # scaler skips one with infinite gradients).
    assert any(not torch.equal(weights[key], value) for key, value in
               _initial_weights().items() if 'conv_seg' in key)


def _initial_weights():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    model.init_weights()
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_all_speedups_together_give_the_plain_step(plain):
    losses, weights = _step(list(SAME_STEP), sgd=True)
    assert losses['decode.loss_ce'] == pytest.approx(
        plain[True][0]['decode.loss_ce'], rel=1e-5)
    for key, value in plain[True][1].items():
        torch.testing.assert_close(weights[key], value, msg=key,
                                   **_tolerance(key))


def test_the_config_records_what_is_on_and_refuses_the_unknown():
    cfg = Config.fromfile(CONFIG)
    assert apply_speedups(cfg, ['channels-last', 'foreach-adam']) == [
        'channels-last', 'foreach-adam']
    assert cfg.training_speedups == ['channels-last', 'foreach-adam']
    assert cfg.model.data_preprocessor.type == 'FastSegDataPreProcessor'
    assert {'type': 'ChannelsLastHook'} in cfg.custom_hooks
    assert {'type': 'OptimizerStateLayoutHook'} in cfg.custom_hooks
    assert cfg.optim_wrapper.optimizer.foreach is True
    # Channels-last trains with cuDNN's heuristics unless the user asks.
    assert cfg.env_cfg.cudnn_benchmark is False
    cfg = Config.fromfile(CONFIG)
    cfg.env_cfg.cudnn_benchmark = True
    apply_speedups(cfg, ['channels-last'], {'env_cfg.cudnn_benchmark': True})
    assert cfg.env_cfg.cudnn_benchmark is True
    assert set(SAME_STEP) < set(SPEEDUPS)
    apply_speedups(cfg, ['fp32-resize', 'compile', 'no-host-sync'])
    assert {'type': 'Fp32ResizeHook'} in cfg.custom_hooks
    assert {'type': 'NoHostSyncHook'} in cfg.custom_hooks
    assert cfg.default_hooks.runtime_info == {
        'type': 'DeferredRuntimeInfoHook'}
    assert {'type': 'CompileHook'} in cfg.custom_hooks
    assert parse_speedups('none') == [] and parse_speedups('') == []
    # Only channels-last changes the cuDNN policy.
    cfg = Config.fromfile(CONFIG)
    apply_speedups(cfg, ['foreach-adam', 'non-blocking', 'no-host-sync'])
    assert cfg.env_cfg.cudnn_benchmark is True
    assert {'type': 'OptimizerStateLayoutHook'} in cfg.custom_hooks
    assert parse_speedups('None') == [] and parse_speedups('null') == []
    with pytest.raises(UsageError, match="unknown training speed-up 'fast'"):
        parse_speedups('channels-last,fast')
    with pytest.raises(UsageError, match="'channels_last' \\(did you mean "
                       "'channels-last'\\?\\).*train.speedups in "
                       "params.yaml.*or none"):
        parse_speedups('channels_last')


def test_ddp_is_built_on_the_model_in_channels_last_layout(monkeypatch):
    """Under torchrun, DDP lays its gradient buckets out like the weights
    when it is built: with channels-last, the weights are in that layout
    by then (a hook converting them later makes every step copy every
    gradient)."""
    from mmengine.registry import MODEL_WRAPPERS

    class Built(Exception):
        pass

    layouts = []

    def built(self, module, *args, **kwargs):
        layouts.append(all(
            p.is_contiguous(memory_format=torch.channels_last)
            for p in module.parameters() if p.dim() == 4))
        raise Built

    monkeypatch.setattr(torch.nn.parallel.DistributedDataParallel,
                        '__init__', built)
    init_default_scope('mmseg')
    for speedups in (['non-blocking'], ['channels-last']):
        cfg = Config.fromfile(CONFIG)
        apply_speedups(cfg, speedups)
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel')
        with pytest.raises(Built):
            MODEL_WRAPPERS.build(wrapper, default_args=dict(
                module=MODELS.build(cfg.model), device_ids=None))
    assert layouts == [False, True]
    assert cfg.model_wrapper_cfg == dict(
        type='ChannelsLastDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=False)


def test_fp32_resize_computes_the_loss_from_fp32_scores_under_bf16():
    """Under bf16 autocast the scores reach the loss in bf16 on the plain
    path and in fp32 with ``fp32-resize``, whose loss is then nearer the
    fp32 one."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    seen = []
    head = model.decode_head
    head.loss_decode.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].dtype))
    batch = model.data_preprocessor(copy.deepcopy(_batch()), True)

    def loss(dtype=None):
        with torch.no_grad(), torch.autocast('cpu', torch.bfloat16,
                                             enabled=dtype is not None):
            return model.loss(**batch)['decode.loss_ce'].item()
    exact, plain_bf16 = loss(), loss(torch.bfloat16)
    assert resizes_in_fp32(model) == 1
    fast_bf16 = loss(torch.bfloat16)
    assert seen == [torch.float32, torch.bfloat16, torch.float32]
    assert abs(fast_bf16 - exact) <= abs(plain_bf16 - exact) + 1e-6


def test_compile_keeps_the_parameters_and_checkpoint_keys():
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(CONFIG).model)
    keys = list(model.state_dict())
    params = list(model.parameters())
    assert compile_model(model) == ['backbone', 'neck', 'decode_head']
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))


def test_a_compiled_head_deep_copied_runs_the_copys_weights():
    """An EMA model or the validation engine's copies of a model trained
    with ``compile`` run their own weights, not the original's."""
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(CONFIG).model).eval()
    compile_model(model)
    copied = copy.deepcopy(model)
    for param in copied.decode_head.parameters():
        param.data.zero_()
    features = [torch.rand(1, 32, 8, 8) for _ in range(4)]
    # Eager: the functions the compiled ones wrap, without compiling.
    with torch.no_grad(), torch.compiler.set_stance('force_eager'):
        original = model.decode_head.forward(features)
        from_copy = copied.decode_head.forward(features)
    assert original.abs().sum() > 0
    assert from_copy.abs().sum() == 0


@pytest.mark.parametrize('saved,resumed', [
    (torch.contiguous_format, torch.channels_last),
    (torch.channels_last, torch.contiguous_format)])
def test_resumed_moments_take_their_parameters_layout(saved, resumed):
    """A run resumed with channels-last turned on (or off) after the
    checkpoint: the moments mmengine loaded, before the hooks put the
    weights in their layout, take the weights' layout, and fused Adam's
    step is then plain Adam's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3),
                                torch.nn.Conv2d(8, 4, 3))
    inputs = torch.rand(2, 3, 9, 9)

    def step(optimizer):
        optimizer.zero_grad()
        model(inputs).square().sum().backward()
        optimizer.step()

    model.to(memory_format=saved)
    trained = torch.optim.Adam(model.parameters(), lr=0.1)
    step(trained)
    checkpoint = (copy.deepcopy(model.state_dict()),
                  copy.deepcopy(trained.state_dict()))
    results = []
    for fused in (False, True):
        model.to(memory_format=torch.contiguous_format)  # as built
        model.load_state_dict(checkpoint[0])
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1,
                                     fused=fused)
        # (A copy: the optimiser keeps the loaded tensors it can.)
        optimizer.load_state_dict(copy.deepcopy(checkpoint[1]))
        model.to(memory_format=resumed)
        if fused:
            assert match_state_layouts(optimizer) == 4  # 2 weights x 2
            assert match_state_layouts(optimizer) == 0
            for param, moments in optimizer.state.items():
                assert moments['exp_avg'].stride() == param.stride()
        step(optimizer)
        results.append([p.detach().clone() for p in model.parameters()])
    for plain, fused in zip(*results):
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)


def test_a_resumed_optimiser_updates_as_the_resuming_run_asks(tmp_path):
    """torch's load_state_dict takes ``fused`` and ``foreach`` from the
    checkpoint; a run resumed with foreach-adam turned on or off updates
    as its own config (and so its record) says."""
    params = [torch.nn.Parameter(torch.ones(3))]
    trained = torch.optim.Adam(params, lr=0.1, fused=True)
    params[0].grad = torch.ones(3)
    trained.step()
    resumed = torch.optim.Adam(params, lr=0.1, foreach=True)
    resumed.load_state_dict(copy.deepcopy(trained.state_dict()))
    assert resumed.param_groups[0]['fused'] is True  # the checkpoint's
    resumed.state[params[0]]['step'] = torch.tensor(1, dtype=torch.int64)
    assert restore_built_update(resumed) == 2
    group = resumed.param_groups[0]
    assert group['foreach'] is True and not group['fused']
    # The step count where a foreach update reads it: a host fp32 scalar
    # (on a GPU, where torch placed it for the checkpoint's fused update,
    # the update would read it back at every step).
    step = resumed.state[params[0]]['step']
    assert step.device.type == 'cpu' and step.dtype == torch.float32
    assert restore_built_update(resumed) == 0
    resumed.step()  # and it steps
    # Every training run has the hook, whatever its speed-ups.
    from raw_formats import BUNDLED_CCP

    from custom_datasets.convert import convert_release
    from fashionseg.runner.training import configure_training
    convert_release('ccp', BUNDLED_CCP, tmp_path / 'ccp', 64)
    for speedups in ([], ['foreach-adam']):
        cfg = configure_training(CONFIG, str(tmp_path / 'work'), {},
                                 speedups=speedups, pretrained=False,
                                 data_root=str(tmp_path / 'ccp'))
        assert cfg.custom_hooks.count(
            {'type': 'OptimizerStateLayoutHook'}) == 1


def test_accuracy_without_sync_is_mmsegs_to_the_bit_and_data_independent():
    """The same value as MMSegmentation's ``accuracy`` (ignored pixels,
    none valid, none ignored), and computable on meta tensors, which have
    no data: so nothing in it waits for the device's values (the
    original's boolean indexing cannot run there)."""
    generator = torch.Generator().manual_seed(0)
    for case in range(4):
        pred = torch.randn(3, 25, 40, 30, generator=generator)
        target = torch.randint(0, 25, (3, 40, 30), generator=generator)
        if case == 1:
            target[:, :20] = 255
        elif case == 2:
            target[:] = 255
        elif case == 3:
            pred = pred.to(torch.bfloat16)
        value = accuracy_without_sync(pred, target, ignore_index=255)
        expected = accuracy(pred, target, ignore_index=255)
        assert value.dtype == expected.dtype and value.shape == (1,)
        assert value.item() == expected.item(), case
    meta = (torch.empty(2, 25, 8, 8, device='meta'),
            torch.empty(2, 8, 8, dtype=torch.long, device='meta'))
    assert accuracy_without_sync(*meta, ignore_index=255).shape == (1,)
    with pytest.raises((NotImplementedError, RuntimeError)):
        accuracy(*meta, ignore_index=255)


def test_no_host_sync_logs_the_same_values_but_only_when_the_logger_reads():
    """The deferred hook hands the message hub the same numbers as
    mmengine's, in the same order, but only at the logger's iterations
    (every 3rd here), at the end of the epoch (7 iterations) and into a
    checkpoint's copy of the message hub."""
    from mmengine.hooks import LoggerHook, RuntimeInfoHook
    from mmengine.logging import MessageHub

    class Loader(list):
        dataset = None

    class Runner:
        def __init__(self, hook, name):
            self.hooks = [hook, LoggerHook(interval=3)]
            self.train_dataloader = Loader([None] * 7)
            self.message_hub = MessageHub(name)
            self.epoch = self.iter = 0
            self.max_epochs, self.max_iters = 1, 7
            self.optim_wrapper = None

    def history(runner):
        scalars = runner.message_hub.log_scalars
        return {k: list(v.data[0]) for k, v in scalars.items()}

    generator = torch.Generator().manual_seed(0)
    outputs = [dict(loss=torch.rand((), generator=generator),
                    acc=torch.rand(1, generator=generator) * 100,
                    step=i) for i in range(7)]
    plain, deferred = RuntimeInfoHook(), DeferredRuntimeInfoHook()
    plain_runner = Runner(plain, 'plain-log')
    runner = Runner(deferred, 'deferred-log')
    plain.before_train(plain_runner)
    deferred.before_train(runner)
    lengths = []
    for i, output in enumerate(outputs):
        plain.after_train_iter(plain_runner, i, outputs=output)
        deferred.after_train_iter(runner, i, outputs=output)
        lengths.append(len(history(runner).get('train/loss', [])))
        if i == 3:
            checkpoint = dict(message_hub=runner.message_hub.state_dict())
            deferred.before_save_checkpoint(runner, checkpoint)
            saved = checkpoint['message_hub']['log_scalars']
            assert len(saved['train/loss'].data[0]) == 4
    assert lengths == [0, 0, 3, 3, 4, 6, 7]
    assert history(runner) == history(plain_runner)
    assert history(runner)['train/step'] == list(range(7))


EPOCHS = 4


def _short_training(data_root, work_dir, seed, speedups, amp=False):
    """The demo's FPN trained briefly with ``speedups`` (and bf16 mixed
    precision with ``amp``): its mean training loss over the last epoch
    and its pixel accuracy on the test split."""
    from training_helpers import data_options

    from fashionseg.runner.training import configure_training, train
    options = data_options(data_root, train_images=12, val_images=2,
                           batch_size=4)
    options.update({'train_cfg.max_epochs': EPOCHS,
                    'train_cfg.val_interval': EPOCHS,
                    'optim_wrapper.optimizer.lr': 5e-3,
                    'test_dataloader.dataset.indices': 6})
    cfg = configure_training(CONFIG, work_dir=str(work_dir),
                             cfg_options=options, pretrained=False,
                             seed=seed, speedups=speedups, amp=amp)
    runner = train(cfg, CONFIG)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    per_epoch = len(losses) // EPOCHS
    return (float(sum(losses[-per_epoch:]) / per_epoch),
            float(runner.test()['aAcc']))


@pytest.mark.slow
def test_short_trainings_with_the_fast_options_end_within_the_seeds_spread(
        tmp_path):
    """params.yaml's speed-ups (what ``make repro`` trains with) against
    none, two seeds each: the mean over the seeds of the last-epoch
    training loss, and of the test accuracy, with them lies within the
    spread the seeds give without them. (A CPU trains these narrow models
    from scratch for seconds here: they learn the loss down but label the
    photos' majority class, so the accuracy is compared too but the loss
    is what tells; the demo's 50 epochs with and without the speed-ups
    are compared in docs/training.md.)"""
    import yaml
    from raw_formats import BUNDLED_CCP

    from custom_datasets.convert import convert_release
    data = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data, 64)
    fast = parse_speedups(yaml.safe_load(
        (REPO / 'params.yaml').read_text())['train']['speedups'])
    assert fast and set(fast) <= set(SAME_STEP)
    seeds = (0, 1)
    plain = [_short_training(data, tmp_path / f'plain{s}', s, [])
             for s in seeds]
    with_fast = [_short_training(data, tmp_path / f'fast{s}', s, fast)
                 for s in seeds]
    # And the fastest recipe on a GPU: bf16 mixed precision with them
    # (measured here: last-epoch losses 2.119 and 2.107 against plain's
    # 2.128 and 2.107).
    with_bf16 = [_short_training(data, tmp_path / f'bf16{s}', s, fast,
                                 amp=True) for s in seeds]
    print(f'(loss, accuracy): plain {plain}, {",".join(fast)} {with_fast}'
          f', with bf16 {with_bf16}')
    # The accuracies' spread is 0 where every run labels the majority
    # class: a pixel's label (of the 6 test photos at 64 px) may still
    # differ, on another CPU's rounding.
    for index, what, least in ((0, 'loss', 0), (1, 'accuracy', 0.1)):
        values = [run[index] for run in plain]
        spread = max(max(values) - min(values), least)
        if what == 'loss':  # the seeds train differently
            assert spread > 0
            # and the loss went down from its start (ln 59 classes).
            assert max(values) < 0.9 * math.log(59)
        for runs in (with_fast, with_bf16):
            mean_fast = sum(run[index] for run in runs) / len(seeds)
            assert abs(mean_fast - sum(values) / len(seeds)) <= spread, \
                (what, plain, runs)


class _HostReads(TorchDispatchMode):
    """Every operation that hands a tensor's value to the host: a Python
    number (``.item()``, ``bool``, ``float``; aten's
    ``_local_scalar_dense``), or an output whose size depends on the data
    (``nonzero``, ``masked_select``, boolean indexing). On a GPU each of
    these makes the host wait for the queued work; the CPU runs the same
    Python, so it shows where they are."""

    SIZE_FROM_DATA = ('nonzero', 'masked_select', 'unique', '_unique2',
                      'repeat_interleave')

    def __init__(self, on_host):
        super().__init__()
        self.on_host = on_host  # gives the tensors kept on the host
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split('.')[0]
        boolean_index = name == 'index' and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for i in args[1])
        if (name == '_local_scalar_dense' and not any(
                args[0] is t for t in self.on_host())
                or name in self.SIZE_FROM_DATA or boolean_index):
            self.reads.append(f'{name} at {_asker()}')
        return func(*args, **(kwargs or {}))


def _asker():
    """Where the code that asked torch is: the innermost frame outside
    torch and this file."""
    frame = next(f for f in reversed(traceback.extract_stack()[:-2])
                 if '/torch/' not in f.filename and f.filename != __file__)
    return f'{frame.filename}:{frame.lineno}'


class _HostCopies(TorchFunctionMode):
    """Every copy of a tensor's values to the host by ``tolist``,
    ``numpy`` or ``cpu``, which dispatches nothing on the CPU but waits
    for the GPU there. (Not ``to('cpu')``: on the CPU that is also the
    copy of a batch to the model's device.)"""

    def __init__(self, reads):
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        if name in ('tolist', 'numpy', 'cpu'):
            self.reads.append(f'{name} at {_asker()}')
        return func(*args, **(kwargs or {}))


class _WatchIterations(Hook):
    """Watches each training iteration from before the first hook that
    runs before it (this hook, at the highest priority) to after the last
    hook after it (its ``end``, at the lowest)."""

    def __init__(self):
        self.reads = {}
        self.mode = None
        self.end = Hook()
        self.end.after_train_iter = self.stop

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        # torch's Adam keeps its step counts on the host (unless fused or
        # capturable) and reads them there: no wait for the GPU.
        optimizer = runner.optim_wrapper.optimizer
        self.mode = _HostReads(lambda: [
            state['step'] for state in optimizer.state.values()
            if 'step' in state])
        self.copies = _HostCopies(self.mode.reads)
        self.mode.__enter__()
        self.copies.__enter__()

    def stop(self, runner, batch_idx, data_batch=None, outputs=None):
        self.copies.__exit__(None, None, None)
        self.mode.__exit__(None, None, None)
        self.reads[runner.iter] = self.mode.reads


def _host_reads_per_iteration(data, work_dir, speedups, amp=False):
    """The host reads of each iteration of a one-epoch run of the demo's
    FPN on ``data`` (4 iterations, the logger printing every second)."""
    from training_helpers import data_options

    from fashionseg.runner.run_config import build_runner
    from fashionseg.runner.training import configure_training
    options = data_options(data, train_images=8, val_images=2,
                           batch_size=2)
    options.update({'train_cfg.max_epochs': 1,
                    'default_hooks.logger.interval': 2})
    cfg = configure_training(CONFIG, work_dir=str(work_dir),
                             cfg_options=options, pretrained=False,
                             seed=0, speedups=speedups, amp=amp)
    runner = build_runner(cfg)
    watch = _WatchIterations()
    runner.register_hook(watch, priority='HIGHEST')
    runner.register_hook(watch.end, priority='LOWEST')
    runner.train()
    return watch.reads


def test_no_host_sync_training_iterations_read_nothing_back(tmp_path):
    """A whole training iteration of the runner (data preprocessing,
    forward, loss, backward, Adam, every hook, logging iterations
    included) with the speed-ups params.yaml trains with, in bf16 too,
    hands no tensor's value to the host but where the logger prints (every
    second iteration here): there, one copy of all the values logged
    since. Without them, MMSegmentation's accuracy and mmengine's
    logging read values at every iteration."""
    from raw_formats import BUNDLED_CCP

    from custom_datasets.convert import convert_release
    data = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data, 48)
    plain = _host_reads_per_iteration(data, tmp_path / 'plain', [])
    assert len(plain) == 4 and all(plain.values()), plain
    assert any('accuracy' in read for read in plain[0]), plain[0]
    for amp in (False, True):
        reads = _host_reads_per_iteration(data, tmp_path / f'fast{amp}',
                                          list(SAME_STEP), amp=amp)
        assert len(reads) == 4 and not reads[0] and not reads[2], reads
        for logged in (1, 3):
            assert len(reads[logged]) == 1, reads
            assert reads[logged][0].startswith('tolist at ') and \
                'speedups.py' in reads[logged][0], reads


def test_non_blocking_loaders_pin_the_label_maps_with_the_images(tmp_path):
    """Under ``non-blocking``, torch's pin-memory step (which a GPU run
    turns on) pins every tensor of a training batch, the data samples'
    label maps as well as the images, so that no copy to the GPU comes
    from unpinned memory (a copy the host waits for); the values and
    metainfo stay as they were. A collate function of the user's own is
    left as it is."""
    from unittest import mock

    from raw_formats import BUNDLED_CCP
    from torch.utils.data._utils.pin_memory import pin_memory
    from training_helpers import data_options

    from custom_datasets.convert import convert_release
    from fashionseg.runner.run_config import build_runner
    from fashionseg.runner.training import configure_training
    data = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data, 48)
    cfg = configure_training(CONFIG, work_dir=str(tmp_path / 'work'),
                             cfg_options=data_options(data),
                             pretrained=False, speedups=['non-blocking'])
    batch = next(iter(build_runner(cfg).train_dataloader))
    pinned = []

    def pin(tensor):  # a CPU build of torch has no pinned memory
        copy = tensor.clone()
        pinned.append(copy)
        return copy

    with mock.patch.object(torch.Tensor, 'pin_memory', pin):
        on_device = pin_memory(batch)
    labels = [sample.gt_sem_seg.data for sample in on_device['data_samples']]
    assert len(labels) == len(on_device['inputs']) == 2
    for tensor in on_device['inputs'] + labels:
        assert any(tensor is p for p in pinned)
    for before, after in zip(batch['data_samples'],
                             on_device['data_samples']):
        assert torch.equal(before.gt_sem_seg.data, after.gt_sem_seg.data)
        assert before.metainfo == after.metainfo
    cfg = Config.fromfile(CONFIG)
    cfg.train_dataloader.collate_fn = dict(type='default_collate')
    apply_speedups(cfg, ['non-blocking'])
    pin_label_maps(cfg)
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
