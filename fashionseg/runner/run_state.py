"""Resuming an interrupted training stage, and publishing its final model.

The pipeline keeps a training stage's work dir between runs (``persist`` in
dvc.yaml) so that an interrupted ``dvc repro`` resumes training from the
last checkpoint instead of starting over. A kept work dir must only be
resumed by the same run: ``--auto-resume`` compares the run's fingerprint
(its resolved config and seed, without the training speed-ups and the
loaders' GPU settings, which change how fast a step is computed, not what
it computes) with the one stored in the work dir, resumes
when they agree (from the newest checkpoint that is whole, skipping one
that an interrupted save left behind) and otherwise moves the old
checkpoints aside (into ``WORK_DIR/stale-N/``, nothing is deleted), so that
a changed parameter never continues someone else's training.

A resumed run also continues the same random numbers (:class:`EpochSeedHook`),
so that it ends as the uninterrupted run would have.
"""
import hashlib
import json
import logging
import math
import os
import os.path as osp
import re
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, set_random_seed
from mmseg.registry import HOOKS

from fashionseg.checkpoints.loading import (check_archive,
                                            load_local_checkpoint,
                                            pickled_records)
from fashionseg.checkpoints.saving import PARTIAL_SUFFIX
from fashionseg.errors import DataError, TrainingDiverged, UsageError
from fashionseg.runner.speedups import logged_iteration, logger_hook
from fashionseg.utils.atomic_write import atomic_write
from fashionseg.utils.output_folder import (json_with_keys, refuse_foreign,
                                            refuse_under_a_file,
                                            refuse_within_inputs)

FINGERPRINT_FILE = 'run_fingerprint.txt'
LAST_CHECKPOINT = 'last_checkpoint'
# What a run was (fashionseg.runner.training.run_record).
RUN_RECORD = 'run_record.json'


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Seeds Python's, NumPy's and torch's generators at the start of each
    training epoch from the run's seed and the epoch (NumPy's
    ``SeedSequence``, so that no two (seed, epoch) pairs share a stream).

    What the training process draws in an epoch (dropout, and the
    augmentation when the loader has no workers) then depends on the run
    and the epoch alone, not on what ran before it in the same process: a
    run resumed from epoch k's checkpoint draws what the uninterrupted run
    drew. (mmengine seeds once, when the runner is built; its checkpoints
    keep no generator state, and validation between a checkpoint and the
    next epoch draws from the generators too.) Loader workers are seeded
    by mmengine from the run's seed and their index alone: workers started
    afresh each epoch (``persistent_workers=False``, the demo) draw the
    same every epoch, so the resumed run ends with the uninterrupted run's
    weights; persistent workers (the paper's configs) carry their
    generators across epochs, so after a resume their flips differ from
    the uninterrupted run's (drawn alike, not the same)."""
    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner) -> None:
        seed = runner.seed if runner.seed is not None else 0
        entropy = np.random.SeedSequence([seed, runner.epoch])
        # Only the generators: cuDNN's flags stay as the runner set them.
        set_random_seed(int(entropy.generate_state(1)[0]))


@HOOKS.register_module()
class ValidateResumedEpochHook(Hook):
    """A run resumed from epoch k's checkpoint first validates epoch k
    when the schedule validates it. The checkpoint is written before that
    validation (mmengine's loop: ``after_train_epoch``, then ``val``), so
    it holds neither the validation nor the best score it may have set: an
    interruption in between, or later, would otherwise leave epoch k out
    of the choice of the best checkpoint (paper section 4: the best
    validation accuracy). It runs after every other hook has prepared
    for training (the checkpoint hook's best-score state included)."""
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        loop, epoch = runner.train_loop, runner.epoch
        if not isinstance(loop, EpochBasedTrainLoop) or epoch == 0 \
                or runner.val_loop is None or epoch < loop.val_begin:
            return
        if epoch % loop.val_interval == 0 or epoch >= loop.max_epochs:
            runner.logger.info(f'validating the resumed epoch {epoch}, '
                               'whose checkpoint precedes its validation')
            runner.val_loop.run()


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops a run whose training loss is no longer finite (NaN or
    infinite: a learning rate too high, a broken label map), with one
    line that says where, rather than training on and saving weights of
    NaN as the best. It reads the loss only where the logger prints it
    (and at the end of each epoch), where it is on the host already, so
    that it adds no wait for the GPU. Every process of a distributed run
    stops together (each logs its own loss; one that stopped alone would
    leave the others waiting in DDP's gradient all-reduce). Under fp16's
    loss scaling, whose scaler skips a non-finite step and lowers its
    scale, the run stops only after :attr:`SCALED_PATIENCE` such checks
    in a row."""
    priority = 'LOW'
    SCALED_PATIENCE = 5

    def before_train(self, runner) -> None:
        self._logger = logger_hook(runner)
        self._scaled = getattr(runner.optim_wrapper, 'loss_scaler',
                               None) is not None
        self._in_a_row = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # Where DeferredRuntimeInfoHook has handed the values over.
        if 'train/loss' not in runner.message_hub.log_scalars or not \
                logged_iteration(self, runner, batch_idx, self._logger):
            return
        loss = runner.message_hub.get_scalar('train/loss').current()
        here = not math.isfinite(loss)
        anywhere = here
        if is_distributed():
            flag = torch.tensor([float(here)])
            all_reduce(flag)  # summed over the processes
            anywhere = bool(flag.item() > 0)
        self._in_a_row = self._in_a_row + 1 if anywhere else 0
        if not anywhere or (self._scaled and
                            self._in_a_row < self.SCALED_PATIENCE):
            return
        # (Of the first parameter group: {'lr': [1e-4, ...]}.)
        lr = next(iter(runner.optim_wrapper.get_lr().values()))[0]
        scaled = f' for {self._in_a_row} logged iterations in a row ' \
            '(fp16\'s loss scaling skipped those steps and did not ' \
            'recover)' if self._scaled else ''
        raise TrainingDiverged(
            f'the training loss is '
            f'{loss if here else "not finite in another process"} at '
            f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
            f'{scaled}: the run diverged, and stops. Lower the learning '
            f'rate ({lr:g}) or look for broken labels; the checkpoints of '
            f'earlier epochs in {runner.work_dir} are kept')


def run_fingerprint(cfg: Config) -> str:
    """A hash of everything that defines a training run's result."""
    settings = cfg.to_dict()
    for volatile in ('resume', 'load_from', 'launcher'):
        settings.pop(volatile, None)
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def move_aside(work_dir: Path, whose: str,
               keep: Sequence[Path] = ()) -> None:
    """Move the checkpoints (``*.pth``, ``last_checkpoint``) of a run
    that is not this one, and its ``run_record.json``, into a new
    ``WORK_DIR/stale-N/``, and say so; they are the user's to keep or
    delete. The checkpoints in ``keep`` stay (one the run loads)."""
    kept = {osp.abspath(p) for p in keep}
    stale = sorted(p for p in work_dir.glob('*.pth')
                   if osp.abspath(p) not in kept) + [
        p for p in [work_dir / LAST_CHECKPOINT] if p.is_file()]
    if not stale:
        return
    # The record of the run they are, which the new run would replace.
    stale += [p for p in [work_dir / RUN_RECORD] if p.is_file()]
    number = 1
    while (work_dir / f'stale-{number}').exists():
        number += 1
    aside = work_dir / f'stale-{number}'
    aside.mkdir()
    for path in stale:
        os.replace(path, aside / path.name)
    print_log(f'{work_dir} held checkpoints of {whose}; moved '
              f'{len(stale)} file(s) to {aside} and starting afresh',
              logger='current', level=logging.WARNING)


def _step_of(path: Path) -> int:
    return int(path.stem.rsplit('_', 1)[1])


def resumes_finished_run(cfg: Config) -> bool:
    """Whether ``cfg`` resumes from the checkpoint of a run's last epoch
    (or iteration): the session trains nothing (a stage that DVC reruns
    on a parameter that does not change the run, such as the speed-ups)."""
    if not cfg.get('resume') or not cfg.get('load_from'):
        return False
    path = Path(cfg.load_from)
    kind, _, step = path.stem.rpartition('_')
    last = (cfg.get('train_cfg') or {}).get(
        {'epoch': 'max_epochs', 'iter': 'max_iters'}.get(
            kind.rsplit('_', 1)[-1], ''))
    return step.isdigit() and last is not None and int(step) >= int(last)


def newest_whole_checkpoint(work_dir: Path):
    """The newest ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir`` that
    is whole, and the newer ones skipped, each with why: a file cut short
    by an interrupted save, or damaged on disk (every record's CRC-32 is
    checked, :func:`fashionseg.checkpoints.loading.check_archive`: the
    whole file is read once, without unpickling it)."""
    candidates = sorted(
        (p for pattern in ('epoch_*.pth', 'iter_*.pth')
         for p in work_dir.glob(pattern)
         if p.stem.rsplit('_', 1)[1].isdigit()),
        key=_step_of, reverse=True)
    skipped = []
    for path in candidates:
        if not zipfile.is_zipfile(path):
            skipped.append((str(path), 'incomplete: not a whole archive '
                            '(an interrupted save)'))
            continue
        try:
            check_archive(str(path))
        except DataError as error:
            skipped.append((str(path), str(error)))
            continue
        return path, skipped
    return None, skipped


def prepare_auto_resume(cfg: Config, is_main_process: bool = True,
                        fingerprint: Optional[str] = None,
                        also: Optional[str] = None) -> bool:
    """Set ``cfg.resume`` when the work dir holds an unfinished run of this
    very config (``fingerprint``, by default :func:`run_fingerprint` of
    ``cfg``; or ``also``, the same run's fingerprint as an earlier
    revision took it, which is then rewritten); otherwise move the
    checkpoints of whatever run was there aside (:func:`move_aside`).
    Returns ``cfg.resume``."""
    work_dir = Path(cfg.work_dir)
    fingerprint = fingerprint or run_fingerprint(cfg)
    stored = work_dir / FINGERPRINT_FILE
    same_run = stored.is_file() and stored.read_text().strip() in {
        fingerprint, also or fingerprint}
    cfg.resume = False
    if same_run:
        newest, skipped = newest_whole_checkpoint(work_dir)
        for path, why in skipped:
            print_log(f'not resuming from {path}: {why}', logger='current',
                      level=logging.WARNING)
        if newest is not None:
            # Resume from that file, whatever last_checkpoint says.
            cfg.resume, cfg.load_from = True, str(newest)
            print_log(f'resuming from {newest}', logger='current')
    if is_main_process:
        _take_work_dir(cfg, fingerprint, None if same_run else
                       'another run (another config, seed or parameters)')
    return cfg.resume


def _take_work_dir(cfg: Config, fingerprint: str,
                   earlier_run: Optional[str]) -> None:
    """The work dir made ready for a run (by its main process): what an
    interrupted save of SafeCheckpointHook left half-written removed; the
    checkpoints of ``earlier_run`` (as the warning describes it; None:
    this run's own, kept) moved aside (:func:`move_aside`) but for the
    one the run starts from (``load_from``), which stays where the runner
    reads it; and the run's fingerprint stored for a later
    ``--auto-resume``."""
    work_dir = Path(cfg.work_dir)
    for partial in work_dir.glob(f'.*{PARTIAL_SUFFIX}'):
        partial.unlink()
    if earlier_run is not None and work_dir.is_dir():
        load_from = cfg.get('load_from')
        move_aside(work_dir, earlier_run,
                   keep=[Path(load_from)] if load_from else [])
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / FINGERPRINT_FILE).write_text(fingerprint + '\n')


# What DVCLive writes in its folder (and removes there when a run starts
# afresh: dvclive.Live._init_cleanup), besides hidden files.
DVCLIVE_ENTRIES = ('metrics.json', 'params.yaml', 'plots', 'report.html',
                   'report.md', 'dvc.yaml', 'artifacts', 'static')
# A folder mmengine's runner makes per run, named by its start time.
_RUN_LOG_FOLDER = re.compile(r'^\d{8}_\d{6}$')


def is_run_folder(work_dir: Path) -> bool:
    """Whether ``work_dir`` holds a training run's files: the harness's
    fingerprint or run record, mmengine's ``last_checkpoint``, a
    checkpoint or a timestamped log folder."""
    work_dir = Path(work_dir)
    if (work_dir / FINGERPRINT_FILE).is_file() or \
            (work_dir / LAST_CHECKPOINT).is_file() or \
            json_with_keys(work_dir / RUN_RECORD,
                           ('config', 'seed', 'resolved_config')):
        return True
    return any(p.suffix == '.pth' or (p.is_dir() and _RUN_LOG_FOLDER.match(
        p.name)) for p in work_dir.iterdir())


def check_work_dir(work_dir: str, config: str, inputs,
                   dvclive_dir: Optional[str] = None) -> None:
    """Before a training run writes anything: ``work_dir`` is new, empty
    or a run's (:func:`is_run_folder`), never a folder of other files (a
    user's, the dataset's: ``inputs``), nor the config's own folder when
    the run's resolved copy of the config would replace it; and the
    DVCLive folder is new, empty or holds only what DVCLive writes, which
    it removes when a run starts afresh."""
    work = Path(work_dir)
    refuse_within_inputs(work, inputs, '--work-dir')
    # (A run's own resolved copy, given back to resume the run, is
    # rewritten as it was.)
    if osp.abspath(work / Path(config).name) == osp.abspath(config) and \
            not is_run_folder(work):
        raise UsageError(
            f'--work-dir {work_dir} holds the config {config}, which the '
            'run would replace with its resolved copy of the same name; '
            'choose another work dir')
    if work.is_dir():
        entries = sorted(p for p in work.iterdir()
                         if not p.name.startswith('.'))
        if entries and not is_run_folder(work):
            refuse_foreign(work, entries, 'a training run', '--work-dir')
    live = Path(dvclive_dir) if dvclive_dir else work / 'dvclive'
    refuse_under_a_file(live, '--dvclive-dir')
    refuse_within_inputs(live, inputs, '--dvclive-dir')
    if live.is_dir():
        foreign = sorted(p for p in live.iterdir()
                         if not p.name.startswith('.')
                         and p.name not in DVCLIVE_ENTRIES)
        if foreign:
            refuse_foreign(live, foreign, 'DVCLive', '--dvclive-dir')


def start_afresh(cfg: Config, fingerprint: str,
                 is_main_process: bool = True) -> None:
    """A run that does not resume: the checkpoints of any earlier run in
    its work dir (this very run's too, started again) are moved aside
    (:func:`move_aside`) rather than overwritten one by one, and the
    run's fingerprint is stored for a later ``--auto-resume``."""
    if is_main_process:
        _take_work_dir(cfg, fingerprint, 'an earlier run (this one starts '
                       'afresh: neither --resume nor --auto-resume)')


# What a checkpoint a run resumes from holds besides the weights (a
# weights-only export has none of them).
_RESUME_RECORDS = ('message_hub', 'optimizer', 'meta')


def resume_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint a resuming run (``cfg.resume``) will resume from, as
    mmengine finds it (``load_from``, else the file ``last_checkpoint``
    names; None where there is none and the run starts afresh), checked
    before anything is written: a file, whole, and a training checkpoint
    with the optimiser's state and the run's progress."""
    path = cfg.get('load_from')
    pointer = Path(cfg.work_dir) / LAST_CHECKPOINT
    named_by = 'load_from'
    if not path:
        if not pointer.is_file():
            return None
        try:
            path = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f'{pointer}: not the name of a checkpoint '
                            f'({error}); remove it, or resume from a '
                            'checkpoint named with load_from') from None
        named_by = str(pointer)
    if not osp.isfile(path):
        raise DataError(f'{named_by} names {path}, which is not a file; '
                        'resume from another checkpoint (load_from) or '
                        'start afresh without --resume')
    # (Its records' checksums are checked when it is loaded.)
    pickled = pickled_records(path) or b''
    missing = [key for key in _RESUME_RECORDS if key.encode() not in pickled]
    if missing:
        raise DataError(
            f'{path}: not a training checkpoint to resume from (it has no '
            f'{", ".join(missing)}: weights exported for testing, or '
            'another kind of file)')
    return path


def export_model(checkpoint: str, out: str) -> None:
    """Write the weights (and meta) of ``checkpoint`` to ``out``, without
    the optimizer state, atomically: the stable file the test stage reads."""
    state = load_local_checkpoint(checkpoint, map_location='cpu')
    exported = {'meta': state.get('meta', {}),
                'state_dict': state['state_dict']}
    with atomic_write(out, binary=True) as f:
        torch.save(exported, f)


def best_checkpoint(runner) -> str:
    """The checkpoint with the best validation score (the paper's final
    model, section 4); the last one when there was no validation."""
    best = runner.message_hub.get_info('best_ckpt')
    if best and osp.isfile(best):
        return best
    last = osp.join(runner.work_dir, LAST_CHECKPOINT)
    with open(last) as f:
        return f.read().strip()
