"""Smoke test of the installed stack: mmseg, compiled mmcv ops, the project
package, and the paper's backbone family built from MMSegmentation's
registry on CPU."""
import importlib

import torch
from conftest import REPO
from mmengine.config import Config
from mmengine.registry import init_default_scope


def test_mmseg_and_compiled_mmcv_ops_import():
    mmseg = importlib.import_module('mmseg')
    assert mmseg.__version__ == '1.2.2'
    ops = importlib.import_module('mmcv.ops')
    assert hasattr(ops, 'point_sample')
    # The compiled extension, not a pure-Python stand-in.
    importlib.import_module('mmcv._ext')


def test_config_custom_imports_registers_project_modules():
    cfg = Config.fromfile(
        str(REPO / 'mmseg_configs' / '_base_' / 'default_runtime.py'))
    assert cfg.custom_imports['imports'] == [
        'fashionseg.mmseg_modules', 'custom_datasets.mmseg_datasets']
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    from mmseg.registry import HOOKS
    hook = HOOKS.build(dict(type='PlainCheckpointHook'))
    assert type(hook).__name__ == 'PlainCheckpointHook'


def test_fpn_resnext101_builds_from_mmseg_registry_and_runs_on_cpu():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS

    import fashionseg.mmseg_modules  # noqa: F401
    cfg = Config.fromfile(str(REPO / 'tests' / 'data' /
                              'fpn_x101_smoke.py'))
    model = MODELS.build(cfg.model).eval()
    backbone = model.backbone
    assert type(backbone).__name__ == 'ResNeXt'
    assert (backbone.depth, backbone.groups, backbone.base_width) == \
        (101, 32, 4)
    n_params = sum(p.numel() for p in model.parameters())
    assert 40e6 < n_params < 60e6  # about 47 M with FPNHead
    image = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        data = model.data_preprocessor({'inputs': [image[0]]}, False)
        logits = model(data['inputs'], mode='tensor')
    assert logits.shape == (1, 23, 16, 24)  # 23 CFPD classes, stride 4
