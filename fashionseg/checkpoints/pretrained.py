"""ImageNet weights of the backbones (the paper starts from an
ImageNet-pretrained ResNeXt-101, section 4).

Weights are fetched before training starts, so that a missing file stops the
run at once with what to do, rather than deep inside model initialisation;
training from scratch is only ever the explicit ``--no-pretrained``.
"""
import os.path as osp
from typing import List

from mmengine.config import Config

from fashionseg.checkpoints.urls import (URL_PREFIXES, CheckpointDigestError,
                                         cache_path, download, resolve_url)
from fashionseg.errors import UsageError


class PretrainedWeightsMissing(UsageError):
    """The config asks for pretrained weights that cannot be had."""


def pretrained_sources(cfg: Config) -> List[str]:
    """The checkpoints the model config initialises from."""
    sources = []
    model = cfg.model
    if model.get('pretrained'):
        sources.append(model.pretrained)
    init_cfg = model.get('backbone', {}).get('init_cfg') or {}
    if init_cfg.get('type') == 'Pretrained' and init_cfg.get('checkpoint'):
        sources.append(init_cfg['checkpoint'])
    return sources


def ensure_pretrained_weights(cfg: Config) -> List[str]:
    """Make every pretrained checkpoint of ``cfg`` available locally.

    Returns:
        The local files.

    Raises:
        PretrainedWeightsMissing: with how to get the file, or to pass
            ``--no-pretrained``.
    """
    files = []
    for source in pretrained_sources(cfg):
        url = resolve_url(source)
        if not url.startswith(URL_PREFIXES):
            if not osp.isfile(url):
                raise PretrainedWeightsMissing(
                    f'pretrained weights {source} not found. Pass '
                    '--no-pretrained to train from scratch.')
            files.append(url)
            continue
        path = cache_path(url)
        try:
            download(url)
        except CheckpointDigestError as error:
            raise PretrainedWeightsMissing(str(error)) from None
        except Exception as error:  # urllib raises many kinds
            raise PretrainedWeightsMissing(
                f'The ImageNet weights {source} are not in {path} and '
                f'could not be downloaded from {url} '
                f'({type(error).__name__}: {error}). Download that file '
                f'to {path} on a machine with internet access (its name '
                'carries the start of its SHA-256, which is checked), or '
                'pass --no-pretrained to train from scratch (the run '
                'records it).') from None
        files.append(str(path))
    return files


def disable_pretrained(cfg: Config) -> None:
    """Train from scratch: drop every pretrained checkpoint from ``cfg``."""
    cfg.model.pretrained = None
    if 'backbone' in cfg.model:
        cfg.model.backbone.init_cfg = None
