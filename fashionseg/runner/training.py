"""Training with the paper's recipe (section 4) through mmengine's Runner:
the logic behind ``tools/train.py``: the device, precision and
data-loading set-up, the run record and the run itself (the config is
loaded by :mod:`fashionseg.runner.run_config`, shared with testing)."""
import difflib
import json
import logging
import math
import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import OPTIMIZERS

from fashionseg.checkpoints.loading import is_exported_weights
from fashionseg.checkpoints.pretrained import (disable_pretrained,
                                               ensure_pretrained_weights,
                                               pretrained_sources)
from fashionseg.config_checks import check_dataset_folders, is_whole_number
from fashionseg.errors import DataError, UsageError
from fashionseg.runner.run_config import (add_custom_hooks, build_runner,
                                          configure_cpu_ddp,
                                          init_cpu_distributed, launcher_rank,
                                          load_run_config, refused_settings)
from fashionseg.runner.run_state import (RUN_RECORD, best_checkpoint,
                                         check_work_dir, export_model,
                                         prepare_auto_resume,
                                         resume_checkpoint,
                                         resumes_finished_run, run_fingerprint,
                                         start_afresh)
from fashionseg.runner.speedups import apply_speedups, pin_label_maps
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.environment import collect_environment
from fashionseg.utils.output_folder import check_result_file

# Images per optimiser step in the paper (section 4).
PAPER_BATCH_SIZE = 5


def amp_dtype_of(cfg: Config) -> Optional[str]:
    """The mixed precision the config's optimiser wrapper trains in (None:
    float32), however it was chosen (``--amp`` or ``--cfg-options``)."""
    wrapper = cfg.optim_wrapper.get('type')
    if wrapper == 'BF16OptimWrapper':
        return 'bfloat16'
    if wrapper == 'AmpOptimWrapper':
        return str(cfg.optim_wrapper.get('dtype') or 'float16')
    return None


def enable_amp(cfg: Config) -> str:
    """Mixed precision: bf16 where the device computes it natively (a
    GPU of compute capability 8.0 or later, or the CPU), without a loss
    scaler (:class:`fashionseg.runner.mixed_precision.BF16OptimWrapper`),
    else fp16 with dynamic loss scaling (mmengine's ``AmpOptimWrapper``).
    Returns the dtype used."""
    if cfg.optim_wrapper.type in ('AmpOptimWrapper', 'BF16OptimWrapper'):
        return amp_dtype_of(cfg)
    # Older GPUs emulate bf16 (torch reports it supported by default),
    # slower than fp16 with its loss scaler.
    if not torch.cuda.is_available() or torch.cuda.is_bf16_supported(
            including_emulation=False):
        cfg.optim_wrapper.type = 'BF16OptimWrapper'
        return 'bfloat16'
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'float16'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    return 'float16'


def configure_gpu_loading(cfg: Config) -> None:
    """Data loading for a GPU: pinned host memory (asynchronous copies)
    and a deeper prefetch queue per worker."""
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if not loader:
            continue
        loader.pin_memory = True
        if loader.get('num_workers', 0) > 0:
            loader.setdefault('prefetch_factor', 4)


def configure_training(config: str, work_dir: Optional[str] = None,
                       cfg_options: Optional[dict] = None,
                       resume: bool = False, amp: bool = False,
                       pretrained: bool = True, launcher: str = 'none',
                       seed: Optional[int] = None, auto_resume: bool = False,
                       dvclive_dir: Optional[str] = None,
                       data_root: Optional[str] = None,
                       max_images: Optional[int] = None,
                       speedups: Sequence[str] = (),
                       export_best: Optional[str] = None) -> Config:
    """The config of a training run, as ``tools/train.py`` builds it.

    ``auto_resume`` resumes only an unfinished run of the same config
    (:mod:`fashionseg.runner.run_state`); ``dvclive_dir`` is where the training
    curves go (default ``WORK_DIR/dvclive``); ``max_images`` trains and
    validates on the first images of each split; ``speedups`` are
    :mod:`fashionseg.runner.speedups`' names; ``export_best``, where
    :func:`train` will export the best weights, is checked here, before
    anything runs. A run that does not resume starts afresh
    (in :func:`train`, :func:`start_afresh`: an earlier run's checkpoints
    are moved aside).
    """
    cfg = load_run_config(config, work_dir, cfg_options, launcher,
                          data_root, max_images,
                          ('train_dataloader', 'val_dataloader'))
    check_dataset_folders(cfg, ('train_dataloader', 'val_dataloader'))
    inputs = data_roots(cfg)
    check_work_dir(cfg.work_dir, config, inputs, dvclive_dir)
    check_training_length(cfg)
    check_optimizer_values(cfg)
    if export_best:
        # Before the training, not after it.
        check_result_file(export_best, 'tools/train.py', '--export-best',
                          is_exported_weights,
                          inputs=[config, *filter(None, inputs)])
    cfg.resume = resume
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    cfg.amp_dtype = enable_amp(cfg) if amp else amp_dtype_of(cfg)
    # A resumed run ends as the uninterrupted one (runner/run_state.py).
    add_custom_hooks(cfg, dict(type='EpochSeedHook'),
                     dict(type='ValidateResumedEpochHook'))
    if launcher != 'none' and not torch.cuda.is_available():
        configure_cpu_ddp(cfg)
    elif launcher != 'none':
        cfg.sync_bn = 'torch'

    cfg.pretrained_requested = pretrained_sources(cfg)
    cfg.pretrained_weights = cfg.pretrained_requested if pretrained else []
    cfg.no_pretrained = not pretrained
    if not pretrained:
        disable_pretrained(cfg)

    # The run is what it learns: its fingerprint is taken before the
    # settings that change only how fast a step is computed (the loaders'
    # GPU settings, the speed-ups), so that a run resumes with other
    # speed-ups or on another GPU (its run record keeps each session's).
    fingerprint = run_fingerprint(cfg)
    if torch.cuda.is_available():
        configure_gpu_loading(cfg)
    # After the DDP settings, whose wrapper channels-last changes.
    apply_speedups(cfg, speedups, cfg_options)

    if auto_resume:
        # The whole config's fingerprint is what runs before this revision
        # stored: a work dir of theirs is the same run, not a stale one.
        prepare_auto_resume(cfg, launcher_rank(launcher) == 0, fingerprint,
                            also=run_fingerprint(cfg))
    # A run that does not resume starts afresh in train(), once its
    # runner is built (start_afresh).
    cfg.fresh_run_fingerprint = None if (auto_resume or resume) \
        else fingerprint
    # In every run (after the fingerprints, which earlier revisions took
    # without them; neither changes what a run learns): a run may resume
    # with foreach-adam or channels-last turned on or off since its
    # checkpoint, and a run whose loss is no longer finite stops.
    for hook in (dict(type='OptimizerStateLayoutHook'),
                 dict(type='FiniteLossHook')):
        if hook not in cfg.custom_hooks:
            add_custom_hooks(cfg, hook)
    pin_label_maps(cfg)
    # Pin DVCLive's folder to a stable path (the work dir by default) so
    # that `dvc plots` finds the curves; a resumed run continues them.
    for backend in cfg.visualizer.get('vis_backends', []):
        if backend['type'] == 'SafeDVCLiveVisBackend':
            backend['init_kwargs'] = dict(
                backend.get('init_kwargs') or {},
                dir=dvclive_dir or osp.join(cfg.work_dir, 'dvclive'),
                resume=bool(cfg.resume))
    return cfg


def _name_resume_failures(runner: Runner, checkpoint: str) -> None:
    """The runner's resume (inside ``runner.train()``, once the optimiser
    is built) raising one error that names ``checkpoint``: a checkpoint of
    another model or optimiser fails there, deep in mmengine."""
    load_or_resume = runner.load_or_resume

    def named() -> None:
        try:
            load_or_resume()
        except torch.OutOfMemoryError:
            raise
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise DataError(
                f'{checkpoint}: the run cannot resume from it '
                f'({type(error).__name__}: {str(error).splitlines()[0]}); '
                'it is a checkpoint of another model, optimiser or '
                'config') from None
    runner.load_or_resume = named


def data_roots(cfg: Config) -> List[str]:
    """The dataset folders a training run reads (its inputs)."""
    return [cfg.get(loader, {}).get('dataset', {}).get('data_root')
            for loader in ('train_dataloader', 'val_dataloader')]


def check_training_length(cfg: Config) -> None:
    """A run that trains: at least one epoch (or iteration), and
    validates every so many of them."""
    train_cfg = cfg.get('train_cfg') or {}
    for key in ('max_epochs', 'max_iters'):
        value = train_cfg.get(key)
        if key in train_cfg and (not is_whole_number(value) or value < 1):
            raise UsageError(f'train_cfg.{key} must be a whole number of at '
                             f'least 1, not {value!r}: the run would train '
                             'nothing')
    interval = train_cfg.get('val_interval', 1)
    if not is_whole_number(interval) or interval < 1:
        raise UsageError('train_cfg.val_interval must be a whole number of '
                         f'at least 1, not {interval!r}')


# The optimiser's settings that torch takes as numbers of at least 0.
OPTIMIZER_NUMBERS = ('lr', 'weight_decay', 'eps', 'momentum')


def check_optimizer_values(cfg: Config) -> None:
    """The optimiser's learning rate, weight decay, epsilon and momentum
    finite numbers of at least 0: torch refuses others only once training
    starts, with a traceback, and takes an infinite learning rate."""
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    for key in OPTIMIZER_NUMBERS:
        value = optimizer.get(key, 0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or value < 0:
            raise UsageError(f'optim_wrapper.optimizer.{key} must be a '
                             f'finite number of at least 0, not {value!r}')


def build_optimizer(runner: Runner, config: str) -> None:
    """Build the runner's optimiser now, which mmengine builds only in
    ``runner.train()``, so that a setting it refuses (an unknown type, an
    argument the class does not take) stops the run in one line before an
    earlier run's checkpoints are moved aside and before the run is
    recorded; ``train()`` takes it as built."""
    kind = (runner.optim_wrapper.get('optimizer') or {}).get('type') \
        if isinstance(runner.optim_wrapper, dict) else None
    if isinstance(kind, str) and OPTIMIZERS.get(kind) is None:
        # (MMSegmentation's registry, then mmengine's, which holds
        # torch's optimisers.)
        known = [*OPTIMIZERS.module_dict, *OPTIMIZERS.parent.module_dict]
        hint = difflib.get_close_matches(kind, known, n=1)
        raise UsageError(
            f'{config}: optim_wrapper.optimizer.type {kind!r} is no '
            'optimiser torch or mmengine knows'
            + (f'; did you mean {hint[0]!r}?' if hint else ''))
    with refused_settings(f'{config}: optim_wrapper cannot be built'):
        runner.optim_wrapper = runner.build_optim_wrapper(
            runner.optim_wrapper)


def global_batch_size(cfg: Config, world_size: int) -> int:
    """Images per optimiser step: the loader's batch on every process."""
    return int(cfg.train_dataloader.batch_size) * int(world_size)


def run_record(runner: Runner, cfg: Config, config: str,
               weight_files: List[str]) -> dict:
    """What a run was: config, commit, versions, device, seed, weights."""
    environment = collect_environment()
    return {
        'config': config,
        'resolved_config': osp.join(cfg.work_dir, osp.basename(config)),
        'experiment_name': runner.experiment_name,
        'seed': runner.seed,
        'launcher': cfg.launcher,
        'world_size': runner.world_size,
        # With N processes (torchrun) each step sees N batches.
        'batch_size_per_process': cfg.train_dataloader.batch_size,
        'global_batch_size': global_batch_size(cfg, runner.world_size),
        'paper_global_batch_size': PAPER_BATCH_SIZE,
        'amp_dtype': cfg.amp_dtype,
        'training_speedups': list(cfg.get('training_speedups', [])),
        # cuDNN's autotuning (on a GPU): channels-last turns it off.
        'cudnn_benchmark': (cfg.get('env_cfg') or {}).get('cudnn_benchmark'),
        'max_images': cfg.get('max_images'),
        'resumed': bool(cfg.resume),
        'pretrained': {
            'loaded': bool(cfg.pretrained_weights),
            'requested_by_config': cfg.pretrained_requested,
            'no_pretrained_flag': cfg.no_pretrained,
            'files': weight_files,
        },
        'device': environment['device'],
        'git': environment['git'],
        'packages': environment['packages'],
        'platform': environment['platform'],
    }


def with_earlier_sessions(record: dict, path: str) -> dict:
    """A resumed run's record, keeping the records of the sessions that
    trained the same run before it (``earlier_sessions``, oldest first):
    each may have run with other speed-ups, precision, device or commit."""
    try:
        with open(path) as f:
            earlier = json.load(f)
    except FileNotFoundError:
        return record
    except (OSError, ValueError) as error:
        # The record is a description, not the run: an unreadable one is
        # said and replaced, not a reason to stop a resumed training.
        print_log(f'{path}: the earlier session\'s record is unreadable '
                  f'({error}); it is replaced by this session\'s',
                  logger='current', level=logging.WARNING)
        return record
    if not isinstance(earlier, dict):
        return record
    sessions = list(earlier.pop('earlier_sessions', None) or [])
    return dict(record, earlier_sessions=sessions + [earlier])


def check_batches(runner: Runner, config: str) -> None:
    """Stop before training when an epoch would have no batch: a split
    smaller than one batch per process, whose last, smaller batch the
    loader drops (``drop_last``), would train nothing and save the
    untrained model as the best."""
    # (A dataset or pipeline setting that its classes refuse.)
    with refused_settings(f'{config}: train_dataloader cannot be built'):
        loader = runner.train_dataloader
    if len(loader) == 0:
        raise UsageError(
            f'{config}: the training split holds {len(loader.dataset)} '
            f'images, fewer than one batch of {loader.batch_size} per '
            f'process over {runner.world_size} process(es), and the loader '
            'drops the last, smaller batch: an epoch would train on nothing.'
            ' Lower train_dataloader.batch_size or train on more images.')


def train(cfg: Config, config: str,
          export_best: Optional[str] = None) -> Runner:
    """Fetch the pretrained weights, build the runner, record the run and
    train; ``export_best`` receives the weights of the best checkpoint."""
    weight_files = []
    if cfg.pretrained_weights:
        weight_files = ensure_pretrained_weights(cfg)
    resumed_from = resume_checkpoint(cfg) if cfg.resume else None
    init_cpu_distributed(cfg)
    runner = build_runner(cfg)
    check_batches(runner, config)
    build_optimizer(runner, config)
    if cfg.get('fresh_run_fingerprint'):
        # After every check that can still refuse the run: an earlier
        # run's checkpoints are moved aside only for a run that starts.
        start_afresh(cfg, cfg.fresh_run_fingerprint, get_rank() == 0)
    if resumed_from:
        _name_resume_failures(runner, resumed_from)
    if get_rank() == 0:
        record = run_record(runner, cfg, config, weight_files)
        if record['global_batch_size'] != PAPER_BATCH_SIZE:
            print_log(
                f'global batch size {record["global_batch_size"]} '
                f'({record["batch_size_per_process"]} per process x '
                f'{record["world_size"]} processes) differs from the '
                f"paper's {PAPER_BATCH_SIZE}; recorded in {RUN_RECORD}",
                logger='current', level=logging.WARNING)
        if cfg.resume:
            record = with_earlier_sessions(
                record, osp.join(cfg.work_dir, RUN_RECORD))
        # A session that finds its run finished trains nothing: the record
        # stays the one of the sessions that trained.
        if not (resumes_finished_run(cfg) and osp.isfile(
                osp.join(cfg.work_dir, RUN_RECORD))):
            write_text_atomic(
                osp.join(cfg.work_dir, RUN_RECORD),
                json.dumps(record, indent=2) + '\n')
        if cfg.no_pretrained:
            print_log('training from scratch (--no-pretrained)',
                      logger='current', level=logging.WARNING)
    runner.train()
    if export_best and get_rank() == 0:
        export_model(best_checkpoint(runner), export_best)
    return runner
