"""The run config that training and testing share: a config loaded as
MMSegmentation's tools load it, with the command line's overrides, the
dataset folder and image limit, and CPU (gloo) DDP where there is no GPU."""
import contextlib
import os
import os.path as osp
import traceback
from typing import Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from fashionseg.config_checks import (LOADERS, check_cfg_options,
                                      check_loader_values, load_config)
from fashionseg.errors import HarnessError, UsageError
from fashionseg.utils.output_folder import refuse_under_a_file


def load_run_config(config: str, work_dir: Optional[str] = None,
                    cfg_options: Optional[dict] = None,
                    launcher: str = 'none', data_root: Optional[str] = None,
                    max_images: Optional[int] = None,
                    loaders: Sequence[str] = LOADERS) -> Config:
    """A config with the command line's overrides, as MMSegmentation's tools
    load it: work_dir from the command line, else the config, else
    ``work_dirs/CONFIG_NAME``; ``data_root`` points every loader at one
    converted dataset and ``max_images`` limits ``loaders`` to the first
    images of their splits. A missing config or an unknown override raises
    :class:`fashionseg.errors.UsageError` (:mod:`fashionseg.config_checks`)."""
    cfg = load_config(config)
    for needed in ('model', *loaders):
        if not cfg.get(needed):
            raise UsageError(f'config {config} has no {needed}: not a '
                             'config of this harness\'s models and datasets '
                             '(mmseg_configs/)')
    cfg.launcher = launcher
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    refuse_under_a_file(cfg.work_dir, '--work-dir')
    check_loader_values(cfg, loaders)
    set_data_root(cfg, data_root)
    limit_images(cfg, max_images, loaders)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """mmengine's ``Runner.from_cfg`` with cuDNN's autotuning as
    ``env_cfg.cudnn_benchmark`` says: mmengine only ever turns it on, so
    in a process that builds several runners (a test over several splits,
    the benchmarks, the gpu-check) one that asks for cuDNN's heuristics
    would otherwise autotune after an earlier one did."""
    torch.backends.cudnn.benchmark = bool(
        cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
    with refused_settings(f'config {cfg.filename}: its runner cannot be '
                          'built'):
        try:
            return Runner.from_cfg(cfg)
        except KeyError as error:
            missing = registry_miss(error)
            if missing:
                # A type no registry holds (a misspelt or unimported
                # class): the registry's own first sentence, as one line.
                raise UsageError(f'config {cfg.filename}: {missing}'
                                 ) from None
            raise


# What mmengine's and MMSegmentation's builders raise for a setting that
# the class they build refuses.
BUILD_ERRORS = (KeyError, TypeError, ValueError, AssertionError)


@contextlib.contextmanager
def refused_settings(what: str):
    """A builder's error in the block (:data:`BUILD_ERRORS`, a setting its
    class refuses: a backbone depth of 7, a pipeline that is not a list)
    as one :class:`UsageError`, ``WHAT (TYPE: first line)``; the harness's
    own errors pass as they are."""
    try:
        yield
    except HarnessError:
        raise
    except BUILD_ERRORS as error:
        raise UsageError(f'{what} ({one_line(error)})') from None


def registry_miss(error: Exception) -> Optional[str]:
    """The first sentence of a registry's error for a type it does not
    hold (``NoSuchHead is not in the mmseg::model registry``); None for
    any other error."""
    text = str(error.args[0]) if isinstance(error, KeyError) and \
        error.args else ''
    if 'is not in the' in text and 'registry' in text:
        return text.split('. ')[0]
    return None


def one_line(error: Exception) -> str:
    """An exception's type and the first line of its message (of a
    registry's, its first sentence); for one without a message (a bare
    ``assert``), where it was raised and the line that raised it."""
    text = registry_miss(error) or (
        str(error.args[0]) if isinstance(error, KeyError) and error.args
        else str(error))
    if not text.strip():
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = frame.filename.split('site-packages' + os.sep)[-1]
        text = f'at {where}:{frame.lineno}: {frame.line}'
    return f'{type(error).__name__}: {text.strip().splitlines()[0]}'


def add_custom_hooks(cfg: Config, *hooks: dict) -> None:
    """Append ``hooks`` to the config's ``custom_hooks``."""
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + list(hooks)


def limit_images(cfg: Config, max_images: Optional[int],
                 loaders: Sequence[str] = LOADERS) -> None:
    """The first ``max_images`` images of each loader's split (mmengine's
    ``indices``), recorded as ``cfg.max_images``."""
    cfg.max_images = max_images
    if max_images is None:
        return
    for name in loaders:
        if cfg.get(name):
            cfg[name].dataset.indices = int(max_images)


def set_data_root(cfg: Config, data_root: Optional[str]) -> None:
    """Point the train, val and test loaders at one converted dataset
    (``tools/*.py --data-root``); ``None`` keeps the config's."""
    if data_root is None:
        return
    for loader in LOADERS:
        if cfg.get(loader) is not None:
            cfg[loader].dataset.data_root = data_root


def replace_sync_bn(node) -> None:
    """Turn every ``SyncBN`` norm config into ``BN`` (in place): SyncBN has
    no CPU implementation, so CPU (gloo) DDP uses per-process BN."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replace_sync_bn(value)


def configure_cpu_ddp(cfg: Config) -> None:
    """DDP over CPU processes (gloo): per-process BN, and a DDP wrapper
    without device ids (mmengine's default passes the local rank as a CUDA
    device id)."""
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    replace_sync_bn(cfg.model)
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=None,
        broadcast_buffers=False)


def launcher_rank(launcher: str) -> int:
    """This process's rank before mmengine sets up the process group:
    torchrun sets ``RANK``; under SLURM's ``srun`` and MPI's ``mpirun``
    mmengine sets it only later, from their own variables, read here."""
    names = ['RANK']
    if launcher == 'slurm':
        names.append('SLURM_PROCID')
    elif launcher == 'mpi':
        names += ['OMPI_COMM_WORLD_RANK', 'PMI_RANK']
    for name in names:
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 0


def init_cpu_distributed(cfg: Config) -> None:
    """Join the process group of a CPU (gloo) DDP run.

    mmengine's launcher calls ``torch.cuda.set_device`` unconditionally,
    which a CPU-only torch cannot do; the Runner skips its own
    initialisation when the group already exists.
    """
    if (cfg.launcher == 'pytorch' and not torch.cuda.is_available()
            and not torch.distributed.is_initialized()):
        torch.distributed.init_process_group(backend='gloo')


def set_local_rank_env(local_rank: int) -> None:
    """``torch.distributed.launch`` passes ``--local-rank``; torchrun sets
    ``LOCAL_RANK``. mmengine reads the environment variable."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
