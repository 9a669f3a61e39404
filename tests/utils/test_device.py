"""Choosing the device: what a user is told when a GPU is asked for and
torch cannot use one."""
import os

import pytest
import torch

from fashionseg.errors import UsageError
from fashionseg.utils.device import select_device


def _no_gpu(monkeypatch, cuda_version):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', cuda_version)


def test_cuda_with_a_cpu_only_torch_says_how_to_install_a_cuda_one(
        monkeypatch):
    _no_gpu(monkeypatch, None)
    with pytest.raises(UsageError) as error:
        select_device('cuda')
    message = str(error.value)
    assert message.startswith('device cuda was asked for')
    assert 'CPU-only build' in message
    assert 'make TORCH_PIP_ARGS=' in message and 'install' in message
    assert 'no usable GPU' not in message


def test_cuda_with_a_cuda_torch_but_no_gpu_blames_the_gpu_or_driver(
        monkeypatch):
    _no_gpu(monkeypatch, '12.4')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    with pytest.raises(UsageError) as error:
        select_device('cuda')
    message = str(error.value)
    assert 'CUDA 12.4 build but finds no usable GPU' in message
    assert 'nvidia-smi' in message
    assert 'CPU-only' not in message and 'hides the GPUs' not in message


def test_cuda_with_the_gpus_hidden_says_so(monkeypatch):
    _no_gpu(monkeypatch, '12.4')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    with pytest.raises(UsageError) as error:
        select_device('cuda')
    assert "CUDA_VISIBLE_DEVICES='' hides the GPUs" in str(error.value)


def test_auto_falls_back_to_the_cpu_without_a_gpu(monkeypatch):
    _no_gpu(monkeypatch, None)
    assert select_device('auto') == 'cpu'


def test_cpu_hides_the_gpus_from_torch_mmengine_and_child_processes(
        monkeypatch):
    """``--device cpu`` on a GPU machine: CUDA may have counted its devices
    already (mmengine does at import), so the environment variable alone
    would leave this process on the GPU."""
    import mmengine.device.utils as mmengine_device
    from mmengine.device import get_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(mmengine_device, 'DEVICE', 'cuda')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    assert select_device('cpu') == 'cpu'
    assert torch.cuda.is_available() is False
    assert get_device() == 'cpu'
    assert os.environ['CUDA_VISIBLE_DEVICES'] == ''
