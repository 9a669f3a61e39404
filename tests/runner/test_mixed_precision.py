"""bf16 training without a loss scaler; fp16 keeps dynamic scaling."""
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import OPTIM_WRAPPERS

import fashionseg.mmseg_modules  # noqa: F401 (registers the wrapper)
from fashionseg.runner import training


def test_bf16_wrapper_autocasts_and_steps_without_a_scaler():
    init_default_scope('mmseg')
    model = torch.nn.Linear(8, 4)
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='BF16OptimWrapper',
        optimizer=torch.optim.Adam(model.parameters(), lr=0.1)))
    assert not hasattr(wrapper, 'loss_scaler')
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(before, model.weight)


def _amp_config():
    return Config(dict(optim_wrapper=dict(
        type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))))


def test_enable_amp_picks_bf16_without_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)

    def gpu(native):
        # torch counts emulated bf16 (GPUs before compute capability 8.0)
        # as supported unless asked for native support only.
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported',
                            lambda including_emulation=True:
                            native or including_emulation)

    gpu(native=True)
    cfg = _amp_config()
    assert training.enable_amp(cfg) == 'bfloat16'
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert training.amp_dtype_of(cfg) == 'bfloat16'
    gpu(native=False)  # a V100 or T4: fp16 with its scaler, faster
    cfg = _amp_config()
    assert training.enable_amp(cfg) == 'float16'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert training.amp_dtype_of(cfg) == 'float16'


def test_amp_on_the_cpu_is_bf16_and_the_record_reads_the_wrapper(
        monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _amp_config()
    assert training.enable_amp(cfg) == 'bfloat16'
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    # Chosen by --cfg-options rather than --amp: recorded all the same.
    cfg = _amp_config()
    assert training.amp_dtype_of(cfg) is None
    cfg.optim_wrapper.type = 'BF16OptimWrapper'
    assert training.amp_dtype_of(cfg) == 'bfloat16'
