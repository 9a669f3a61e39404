"""Weights given as URLs never run code: a crafted checkpoint served over
HTTP from 127.0.0.1 is refused by tools/test.py and by tools/train.py as
``model.pretrained`` and as ``load_from``, and a file whose name carries a
SHA-256 prefix is checked against it."""
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch
from tool_process import run_tool
from training_helpers import CONFIG_DIR, build_converted_datasets

from fashionseg.checkpoints.urls import (CheckpointDigestError, cache_path,
                                         download, sha256_of)

REFUSAL = 'Refusing to load checkpoint'


class _CreatesAFile:
    """Unpickling this calls ``open(marker, 'w')``: code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """A web server on 127.0.0.1 serving a folder, and a crafted
    checkpoint in it."""
    root = tmp_path_factory.mktemp('served')
    marker = tmp_path_factory.mktemp('marker') / 'code-ran'
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': _CreatesAFile(marker)}, root / 'crafted.pth')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(root))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield dict(url=f'http://127.0.0.1:{httpd.server_port}', root=root,
                   marker=marker)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return build_converted_datasets(tmp_path_factory.mktemp('data'))['ccp']


def _tool(args, tmp_path):
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch'),
               PYTHONWARNINGS='ignore')
    assert args[0].startswith('tools/'), args
    return run_tool(args[0][len('tools/'):], *args[1:], env=env)


def _assert_refused(result, marker):
    assert result.returncode != 0
    assert REFUSAL in result.stdout + result.stderr, result.stderr[-3000:]
    assert not marker.exists()


def test_test_tool_refuses_a_crafted_checkpoint_url(server, data_root,
                                                    tmp_path):
    result = _tool(['tools/test.py', str(CONFIG_DIR / 'fcn_r101_ccp.py'),
                    f'{server["url"]}/crafted.pth', '--data-root',
                    str(data_root), '--device', 'cpu', '--work-dir',
                    str(tmp_path / 'work')], tmp_path)
    _assert_refused(result, server['marker'])


@pytest.mark.parametrize('option', ['model.pretrained', 'load_from'])
def test_train_tool_refuses_a_crafted_checkpoint_url(server, data_root,
                                                     tmp_path, option):
    args = ['tools/train.py', str(CONFIG_DIR / 'fcn_r101_ccp.py'),
            '--data-root', str(data_root), '--device', 'cpu',
            '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            f'{option}={server["url"]}/crafted.pth',
            'train_cfg.max_epochs=1']
    if option == 'load_from':
        args.append('--no-pretrained')
    _assert_refused(_tool(args, tmp_path), server['marker'])


def test_a_download_whose_digest_differs_is_refused_and_not_kept(
        server, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    payload = server['root'] / 'weights-0123abcd.pth'
    torch.save({'w': torch.ones(2)}, payload)
    url = f'{server["url"]}/weights-0123abcd.pth'
    with pytest.raises(CheckpointDigestError) as error:
        download(url)
    message = str(error.value)
    assert '0123abcd' in message and sha256_of(payload) in message
    assert not cache_path(url).exists()
    assert not list(cache_path(url).parent.glob('*'))


def test_a_placed_file_with_the_wrong_digest_is_refused_and_kept(
        tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url = 'http://127.0.0.1:9/resnext101_32x4d-a5af3160.pth'
    placed = cache_path(url)
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b'not the published file')
    with pytest.raises(CheckpointDigestError, match='a5af3160'):
        download(url)
    assert placed.read_bytes() == b'not the published file'


def test_a_download_with_the_right_digest_loads_weights_only(
        server, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    from mmengine.runner import CheckpointLoader

    import fashionseg.mmseg_modules  # noqa: F401  (registers the loaders)
    plain = server['root'] / 'plain.pth'
    torch.save({'w': torch.arange(3.0)}, plain)
    named = server['root'] / f'plain-{sha256_of(plain)[:8]}.pth'
    plain.rename(named)
    loaded = CheckpointLoader.load_checkpoint(f'{server["url"]}/{named.name}')
    torch.testing.assert_close(loaded['w'], torch.arange(3.0))
