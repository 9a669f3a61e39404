"""Checkpoints given as URLs or model-zoo names, loaded without running code.

mmengine's loaders for ``http://``, ``https://``, ``open-mmlab://``,
``openmmlab://``, ``torchvision://``, ``modelzoo://`` and ``mmcls://`` end in
``torch.hub.load_state_dict_from_url``, which unpickles with
``weights_only=False``: a crafted file behind a URL would run its code. This
module replaces each of them (``CheckpointLoader.register_scheme``, so
training, ``load_from``, ``model.pretrained``, ``Runner.resume``,
``init_model`` and ``tools/test.py`` all use it) with one that resolves the
name to its URL, downloads the file into torch hub's cache (through a
temporary file, on local rank 0 first), checks the SHA-256 digest prefix
that the file name carries (``NAME-<hex>.pth``, as torch hub does), and
loads it with :func:`fashionseg.checkpoints.loading.load_local_checkpoint`
(weights only).
"""
import hashlib
import os
import os.path as osp
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import (_get_mmengine_home,
                                        get_deprecated_model_names,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models)

from fashionseg.checkpoints.loading import load_local_checkpoint
from fashionseg.errors import DataError
from fashionseg.utils.atomic_write import atomic_path

URL_PREFIXES = ('http://', 'https://')
OPENMMLAB_PREFIXES = ('open-mmlab://', 'openmmlab://')
TORCHVISION_PREFIXES = ('torchvision://', 'modelzoo://')
MMCLS_PREFIX = 'mmcls://'
ZOO_PREFIXES = OPENMMLAB_PREFIXES + TORCHVISION_PREFIXES + (MMCLS_PREFIX,)
# torch hub's convention: the digest prefix after the last '-' of the name.
DIGEST_IN_NAME = re.compile(r'-([a-f0-9]{6,64})\.')
# Files whose digest was checked, by path, size and modification time:
# training checks the backbone's file before building the model, which then
# loads it.
_VERIFIED = set()


class CheckpointDigestError(DataError):
    """A checkpoint file whose SHA-256 does not match its published one."""


def resolve_url(source: str) -> str:
    """A model-zoo name (``open-mmlab://resnext101_32x4d``,
    ``torchvision://resnet50``, ``mmcls://...``) as the URL (or, for some
    OpenMMLab names, the local path) it stands for; anything else as it
    is."""
    for prefix in OPENMMLAB_PREFIXES:
        if source.startswith(prefix):
            name = source[len(prefix):]
            name = get_deprecated_model_names().get(name, name)
            return get_external_models()[name]
    for prefix in TORCHVISION_PREFIXES:
        if source.startswith(prefix):
            return get_torchvision_models()[source[len(prefix):]]
    if source.startswith(MMCLS_PREFIX):
        return get_mmcls_models()[source[len(MMCLS_PREFIX):]]
    return source


def cache_path(url: str) -> Path:
    """Where a downloaded checkpoint lives: torch hub's cache, as mmengine
    and torch hub put it (``$TORCH_HOME/hub/checkpoints/NAME``)."""
    name = osp.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / 'checkpoints' / name


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify_digest(path, name: str = None) -> None:
    """Check ``path`` against the digest prefix in its file name (or in
    ``name``), as torch hub's ``check_hash`` does; names without one are
    not checked.

    Raises:
        CheckpointDigestError: with the path, the expected and the found
            digest.
    """
    match = DIGEST_IN_NAME.search(osp.basename(name or str(path)))
    if match is None:
        return
    stat = os.stat(path)
    key = (osp.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:  # the same file, checked earlier in this process
        return
    expected, found = match.group(1), sha256_of(path)
    if not found.startswith(expected):
        raise CheckpointDigestError(
            f'{path}: SHA-256 {found} does not start with {expected}, the '
            'digest its published name carries; the file is corrupt or not '
            'the published one. Delete it to download it again.')
    _VERIFIED.add(key)


def download(url: str) -> Path:
    """``url`` in torch hub's cache, downloaded through a temporary file
    and checked first if it is not there yet; an existing file is checked
    and never replaced."""
    path = cache_path(url)
    if not path.is_file():
        with atomic_path(path) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), progress=False)
            verify_digest(tmp, name=path.name)
    else:
        verify_digest(path)
    return path


def load_url_checkpoint(filename: str, map_location=None):
    """mmengine's loader for URLs and model-zoo names, weights only."""
    url = resolve_url(filename)
    if not url.startswith(URL_PREFIXES):
        # An OpenMMLab name for a file under mmengine's home.
        return load_local_checkpoint(osp.join(_get_mmengine_home(), url),
                                     map_location)
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download(url)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = download(url)
    return load_local_checkpoint(str(path), map_location)


CheckpointLoader.register_scheme(
    prefixes=URL_PREFIXES + ZOO_PREFIXES, loader=load_url_checkpoint,
    force=True)
