"""The reproduction grid side by side (docs/pipeline.md, "Many GPUs or a
cluster").

The paper's reproduction is 4 models x 2 datasets x 3 seeds independent
training runs, each on one GPU at the paper's batch of 5, each followed by
its test and CRF stages. ``dvc repro`` runs them one after another; here the
stages that do not depend on each other run side by side as jobs of
submitit, an existing scheduler: its local executor for the GPUs (one job
per GPU) or cores of one machine, its SLURM executor for a cluster.

DVC stays the record. Each job is ``dvc --wait-for-lock repro
--single-item STAGE``: DVC itself removes the stage's outputs, runs its
command and writes its entry in ``dvc.lock``, and it holds the
repository's lock only around that bookkeeping, not while the command
runs. So after a grid ``dvc.lock`` is what ``dvc repro`` leaves, ``dvc
status`` has nothing to report and a following ``dvc repro`` runs
nothing. A stage is submitted once everything upstream of it is done, and
only if DVC says it changed; a failed job is reported with its log and the
rest go on (what depends on it waits for the next run); rerunning submits
only what is missing, and a training stage resumes from its last whole
checkpoint (``--auto-resume``). On SLURM a preempted or timed-out job is
requeued by submitit and resumes the same way.
"""
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set

import submitit
from submitit.helpers import Checkpointable

from fashionseg.errors import UsageError
from fashionseg.utils.cli import Terminated

EXECUTORS = ('local', 'slurm')
# The settings of grid.slurm in params.yaml (slurm_parameters).
SLURM_SETTINGS = {'partition', 'account', 'time_min', 'gpus_per_job',
                  'cpus_per_job', 'mem_gb', 'qos', 'constraint',
                  'cpu_stages'}
# A week: the local executor's own default stops a job after 2 minutes.
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
# How often the scheduler looks at its jobs: a finished stage's
# dependants start within this. Cheap on both executors (the local one
# reads its processes' state; submitit spaces its queries to SLURM
# itself, 2 s apart at the least, whatever the polling), and the demo's
# stages take seconds.
POLL_SECONDS = 0.5


@dataclass
class GridSettings:
    """How the grid runs (``grid`` in params.yaml, or the command line).

    ``jobs``: jobs at a time (local: by default one per GPU, more share
    them; SLURM: jobs queued at once, 0 for no limit); ``threads``: CPU
    threads of each local job (default: the cores shared out among the
    jobs); ``alone``: stages (their name before ``@``) that time or
    describe the machine and so run with nothing beside them;
    ``logs``: where a stage's job log goes when its command names no
    ``--work-dir`` (beside which it goes otherwise); ``slurm``: the
    partition, account, time limit and resources of each SLURM job."""
    executor: str = 'local'
    jobs: Optional[int] = None
    threads: Optional[int] = None
    alone: Sequence[str] = ()
    logs: str = 'work_dirs/grid'
    slurm: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.slurm, dict):
            raise UsageError(f'grid.slurm must be a mapping of settings, not '
                             f'{self.slurm!r}')
        # Checked whatever the executor: a misspelt setting is said at
        # once, not when the grid first runs on SLURM.
        check_slurm_settings(self.slurm)
        if isinstance(self.alone, str) or not all(
                isinstance(name, str) for name in self.alone or ()):
            raise UsageError(f'grid.alone must be a list of stage names, '
                             f'not {self.alone!r}')
        self.alone = tuple(self.alone or ())
        if self.executor not in EXECUTORS:
            raise UsageError(f'executor must be one of {EXECUTORS}, not '
                             f'{self.executor!r}')
        for name, value in (('jobs', self.jobs), ('threads', self.threads)):
            if value is not None and (type(value) is not int
                                      or value < 0):
                raise UsageError(f'grid {name} must be a whole number of at'
                                 f' least 0, not {value!r}')


def check_slurm_settings(slurm: dict) -> None:
    """Every key of ``grid.slurm`` is one of :data:`SLURM_SETTINGS`."""
    unknown = sorted(set(slurm) - SLURM_SETTINGS)
    if unknown:
        raise UsageError(f'grid.slurm has no setting {unknown[0]!r}; known: '
                         f'{", ".join(sorted(SLURM_SETTINGS))}')


def read_grid_section(params: Path) -> dict:
    """The ``grid:`` section of ``params`` (a params.yaml), empty where it
    has none; a file that is missing, not YAML or not a mapping is one
    :class:`UsageError` that names it."""
    import yaml
    try:
        text = Path(params).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f'--params {params}: cannot be read '
                         f'({getattr(error, "strerror", None) or error})'
                         ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f'--params {params}: not YAML '
                         f'({str(error).splitlines()[0]})') from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f'--params {params}: not the pipeline\'s parameters '
                         '(no keys at its top level)')
    grid = loaded.get('grid') or {}
    if not isinstance(grid, dict):
        raise UsageError(f'--params {params}: grid must be a mapping of '
                         f'settings, not {grid!r}')
    slurm = grid.get('slurm') or {}
    if not isinstance(slurm, dict):
        raise UsageError(f'--params {params}: grid.slurm must be a mapping '
                         f'of settings, not {slurm!r}')
    return dict(grid, slurm=dict(slurm))


def slurm_parameters(slurm: dict) -> dict:
    """submitit's ``SlurmExecutor`` parameters for one stage's job: one
    task with ``gpus_per_job`` GPUs, ``cpus_per_job`` cores and
    ``mem_gb`` of memory, for ``time_min`` minutes, on ``partition``
    with ``account`` and ``qos`` (each but the time left to the cluster's
    default when null). ``cpu_stages`` (names before ``@``) ask for no
    GPU."""
    check_slurm_settings(slurm)
    if not slurm.get('time_min'):
        # submitit's own default is 5 minutes.
        raise UsageError('grid.slurm.time_min (minutes per job) must be set'
                         ' for SLURM')
    parameters = dict(time=int(slurm['time_min']), ntasks_per_node=1,
                      # submitit requeues the job on the signal SLURM sends
                      # this long before the time limit or a preemption.
                      signal_delay_s=120)
    for key, name in (('gpus_per_job', 'gpus_per_node'),
                      ('cpus_per_job', 'cpus_per_task')):
        if slurm.get(key) is not None:
            parameters[name] = int(slurm[key])
    if slurm.get('mem_gb'):
        parameters['mem'] = f'{int(slurm["mem_gb"])}GB'
    for key in ('partition', 'account', 'qos', 'constraint'):
        if slurm.get(key):
            parameters[key] = str(slurm[key])
    return parameters


class StageJob(Checkpointable):
    """One job: ``dvc --wait-for-lock repro --single-item STAGE`` in the
    project's root, with ``threads`` CPU threads and the GPUs ``gpus``
    (CUDA_VISIBLE_DEVICES) when given. Requeued as it is when SLURM
    preempts it or its time runs out (``Checkpointable``); its training
    resumes from the last whole checkpoint."""

    def __init__(self, stage: str, root: str,
                 threads: Optional[int] = None,
                 gpus: Optional[Sequence[str]] = None):
        self.stage, self.root, self.threads = stage, root, threads
        self.gpus = None if gpus is None else list(gpus)

    def command(self) -> List[str]:
        return [sys.executable, '-m', 'dvc', '--wait-for-lock', 'repro',
                '--single-item', self.stage]

    def __call__(self) -> str:
        env = dict(os.environ)
        if self.threads:
            for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                         'OPENBLAS_NUM_THREADS'):
                env[name] = str(self.threads)
        if self.gpus is not None:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(self.gpus)
        print('$ ' + shlex.join(self.command()), flush=True)
        # In a session of its own, so that a cancelled job stops the whole
        # stage (DVC ignores SIGINT while its command runs, and the
        # command is its child): nothing keeps training on a GPU, or in a
        # work dir that the next run resumes.
        process = subprocess.Popen(self.command(), cwd=self.root, env=env,
                                   start_new_session=True)
        try:
            returncode = process.wait()
        except BaseException:
            _stop_group(process)
            raise
        if returncode != 0:
            raise RuntimeError(f'stage {self.stage} failed (dvc exit status '
                               f'{returncode})')
        return self.stage


def _stop_group(process: subprocess.Popen, grace: float = 0.8) -> None:
    """SIGTERM to ``process``'s group, SIGKILL after ``grace`` seconds
    (submitit's local controller kills the job about a second after
    cancelling it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Pipeline:
    """The stages ``targets`` need (with everything upstream of them), as
    DVC's own graph has them."""

    def __init__(self, root: Path, targets: Sequence[str]):
        from dvc.repo import Repo
        self.root = Path(root).resolve()
        with Repo(str(self.root)) as repo:
            stages = {}
            for target in targets:
                try:
                    collected = repo.stage.collect(self._spec(target),
                                                   with_deps=True)
                except Exception as error:  # DVC's own error names it
                    raise UsageError(f'no pipeline stage {target!r}: '
                                     f'{error}') from None
                stages.update((s.addressing, s) for s in collected)
            graph = repo.index.graph
            # DVC's graph points from a stage to the stages it depends on.
            self.upstream: Dict[str, Set[str]] = {
                name: {s.addressing for s in graph.successors(stage)}
                & set(stages)
                for name, stage in stages.items()}
            self.commands = {name: stage.cmd for name, stage in
                             stages.items()}
            # Run every time, as by `dvc repro` (`always_changed: true`).
            self.always_changed = {name for name, stage in stages.items()
                                   if stage.always_changed}
        self.order = _topological(self.upstream)

    def _spec(self, name: str) -> str:
        """``name`` in the project's dvc.yaml, whatever the current
        folder (DVC reads a bare name relative to it)."""
        return name if ':' in name else f'{self.root / "dvc.yaml"}:{name}'

    def changed(self, names: Sequence[str]) -> Dict[str, bool]:
        """Whether DVC would run each stage now (read afresh: other jobs
        write dvc.lock). A frozen stage never runs, as in ``dvc repro``."""
        from dvc.repo import Repo
        result = {}
        with Repo(str(self.root), _wait_for_lock=True) as repo, repo.lock:
            for name in names:
                stage, = repo.stage.collect(self._spec(name))
                result[name] = not stage.frozen and bool(stage.changed())
        return result

    def log_folder(self, name: str, logs: Path) -> Path:
        """Beside the work dir the stage's command names, else in
        ``logs``."""
        command = self.commands[name]
        words = shlex.split(command if isinstance(command, str)
                            else ' '.join(command))
        if '--work-dir' in words[:-1]:
            work_dir = Path(words[words.index('--work-dir') + 1])
            return self.root / work_dir.parent / 'logs' / name
        return self.root / logs / name


def _topological(upstream: Dict[str, Set[str]]) -> List[str]:
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(upstream[name]):
            visit(dep)
        order.append(name)
    for name in sorted(upstream):
        visit(name)
    return order


def _gpus() -> List[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible:
        names = [v.strip() for v in visible.split(',') if v.strip()]
        return names[:count]
    return [str(i) for i in range(count)]


@dataclass
class Outcome:
    """What a grid did: stages run, found unchanged, failed (with their
    logs) and not run because something upstream failed."""
    ran: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    not_run: List[str] = field(default_factory=list)


class Grid:
    """Runs a :class:`Pipeline`'s stages as submitit jobs (see the module
    docstring); ``say`` prints progress."""

    def __init__(self, pipeline: Pipeline, settings: GridSettings,
                 say: Callable[[str], None] = print):
        self.pipeline, self.settings, self.say = pipeline, settings, say
        self.started = time.monotonic()
        if settings.executor == 'local':
            self.gpus = _gpus()
            jobs = settings.jobs or max(1, len(self.gpus))
            if self.gpus and jobs > len(self.gpus):
                # The demo trains on the CPU wherever it runs; the paper's
                # runs would share a GPU and slow each other.
                say(f'{jobs} jobs at a time share {len(self.gpus)} GPU(s) '
                    '(job k on GPU k mod the count)')
            self.slots = jobs
            cores = os.cpu_count() or 1
            self.threads = settings.threads or max(1, cores // jobs)
        else:
            self.gpus = []
            self.slots = settings.jobs or 0  # 0: no limit
            self.threads = None
            self.slurm = slurm_parameters(settings.slurm)
            self.cpu_stages = set(settings.slurm.get('cpu_stages') or ())

    def _alone(self, name: str) -> bool:
        return name.split('@')[0] in self.settings.alone

    def _gpus_of(self, slot: Optional[int]) -> List[str]:
        """The GPUs of a local job in ``slot`` (None: every GPU, for a
        stage that runs alone); with more slots than GPUs, slot k has GPU
        k mod the count."""
        if slot is None or not self.gpus:
            return list(self.gpus)
        return [self.gpus[slot % len(self.gpus)]]

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return (f'[{seconds // 3600}:{seconds // 60 % 60:02d}:'
                f'{seconds % 60:02d}]')

    def submit(self, name: str, slot: Optional[int]):
        """``name``'s job, on GPU ``slot`` (locally; None: a stage that
        runs alone, on every GPU and core)."""
        # One folder per submission: submitit names its files by job id,
        # which locally is a process id that may come again.
        folder = self.pipeline.log_folder(name, Path(self.settings.logs)) \
            / time.strftime('%Y%m%d-%H%M%S')
        folder.mkdir(parents=True, exist_ok=True)
        root = str(self.pipeline.root)
        if self.settings.executor == 'local':
            executor = submitit.LocalExecutor(folder=folder)
            # The job picks its GPU itself (CUDA_VISIBLE_DEVICES), which
            # also takes GPU names that are not numbers (UUIDs).
            executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
            job = StageJob(name, root,
                           None if slot is None else self.threads,
                           self._gpus_of(slot))
        else:
            executor = submitit.SlurmExecutor(folder=folder)
            executor.update_parameters(**self.slurm_job(name))
            job = StageJob(name, root)
        return executor.submit(job)

    def slurm_job(self, name: str) -> dict:
        """submitit's SlurmExecutor parameters for ``name``'s job: those
        of ``grid.slurm``, the whole node for a stage that runs alone, no
        GPU for one of ``cpu_stages``."""
        parameters = dict(self.slurm, job_name=name)
        if self._alone(name):
            parameters['exclusive'] = True
        if name.split('@')[0] in self.cpu_stages:
            parameters.pop('gpus_per_node', None)
        return parameters

    def run(self) -> Outcome:
        pipeline, outcome = self.pipeline, Outcome()
        pending = list(pipeline.order)
        done: Set[str] = set()
        checked: Set[str] = set()
        running: Dict[str, tuple] = {}  # name: (job, slot, start)
        free = list(range(self.slots)) if self.slots else []
        try:
            while pending or running:
                broken = set(outcome.failed) | set(outcome.not_run)
                for name in [n for n in pending
                             if pipeline.upstream[n] & broken]:
                    pending.remove(name)
                    outcome.not_run.append(name)
                ready = [n for n in pending
                         if pipeline.upstream[n] <= done]
                unchecked = [n for n in ready if n not in checked]
                if unchecked:
                    for name, changed in pipeline.changed(unchecked).items():
                        if changed:
                            checked.add(name)
                        else:
                            pending.remove(name)
                            done.add(name)
                            outcome.unchanged.append(name)
                    continue
                others = [n for n in ready if not self._alone(n)]
                for name in others + [n for n in ready if n not in others]:
                    alone = self._alone(name)
                    if any(self._alone(n) for n in running):
                        break
                    # A stage that runs alone waits until nothing else is
                    # running or ready, so that it holds up no other.
                    if alone and (running or others):
                        break
                    if self.slots and not free:
                        break
                    slot = None if alone or not self.slots else free.pop(0)
                    job = self.submit(name, slot)
                    running[name] = (job, slot, time.monotonic())
                    pending.remove(name)
                    where = '' if slot is None or not self.gpus else \
                        f' on GPU {self._gpus_of(slot)[0]}'
                    self.say(f'{self._clock()} started {name}{where} (job '
                             f'{job.job_id}; log {job.paths.stdout})')
                    if alone:
                        break
                finished = [n for n, (job, _, _) in running.items()
                            if job.done()]
                for name in finished:
                    job, slot, start = running.pop(name)
                    if slot is not None:
                        free.append(slot)
                        free.sort()
                    minutes = (time.monotonic() - start) / 60
                    try:
                        job.result()
                    except Exception as error:  # the job's own failure
                        outcome.failed[name] = str(job.paths.stderr)
                        self.say(f'{self._clock()} FAILED {name} after '
                                 f'{minutes:.1f} min: '
                                 f'{failure_reason(job.paths.stderr, error)}'
                                 f'; log: {job.paths.stderr}')
                        continue
                    done.add(name)
                    outcome.ran.append(name)
                    self.say(f'{self._clock()} finished {name} in '
                             f'{minutes:.1f} min')
                if not finished and running:
                    time.sleep(POLL_SECONDS)
        except (KeyboardInterrupt, Terminated):
            for name, (job, _, _) in running.items():
                job.cancel(check=False)
                self.say(f'{self._clock()} cancelled {name}')
            raise
        except BaseException:
            # Anything else stops only the waiting: the jobs go on, and
            # DVC records each that ends.
            for name, (job, _, _) in running.items():
                self.say(f'{self._clock()} still running: {name} (job '
                         f'{job.job_id}; log {job.paths.stdout})')
            raise
        return outcome


def grid_hours(run_hours: Sequence[float], gpus: int) -> float:
    """Wall time of independent runs (each on one GPU, in hours) on
    ``gpus`` GPUs: each run, longest first, goes to the GPU that frees
    first (a greedy estimate, never below the longest run or the total
    shared out)."""
    loads = [0.0] * max(1, int(gpus))
    for hours in sorted(run_hours, reverse=True):
        loads[loads.index(min(loads))] += hours
    return max(loads)


def failure_reason(log: Path, error: BaseException) -> str:
    """Why a stage's job failed, from its error log: the stage's tool's
    own ``error:`` line, else the last line the stage's command wrote
    before DVC reported the failure (a traceback's last line), else
    DVC's report, else the job's error."""
    try:
        lines = [line.strip() for line in Path(log).read_text(
            errors='replace').splitlines()[-400:] if line.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith('error: '):
            return line[len('error: '):]
    for index, line in enumerate(lines):
        if line.startswith('ERROR: ') and 'failed to reproduce' in line:
            before = lines[index - 1] if index else ''
            if before and not before.startswith(('$ ', 'Running stage')):
                return before
            return line[len('ERROR: '):]
    return _last_line(error)


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
