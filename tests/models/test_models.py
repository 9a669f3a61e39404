"""The paper's head (section 2) and the model configs."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from training_helpers import CONFIG_DIR, DATASETS, MODELS

import fashionseg.mmseg_modules  # noqa: F401


def _head(**kwargs):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as REGISTRY
    cfg = dict(type='ConcatFPNHead', in_channels=[8, 8, 8, 8],
               in_index=[0, 1, 2, 3], channels=16, num_classes=5,
               norm_cfg=dict(type='BN'))
    cfg.update(kwargs)
    return REGISTRY.build(cfg)


def _pyramid(batch=2, channels=8, height=32, width=24):
    """P2..P5 at strides 4, 8, 16, 32 of an image 4x larger."""
    return [torch.rand(batch, channels, height // 2**i, width // 2**i)
            for i in range(4)]


def test_paper_head_output_shape():
    head = _head().eval()
    assert head(_pyramid()).shape == (2, 5, 32, 24)  # P2's resolution


def test_paper_head_concatenates_four_levels():
    head = _head().eval()
    # The fusing convolution sees all four levels side by side.
    assert head.fuse.conv.in_channels == 4 * 8
    assert head.fuse.conv.kernel_size == (3, 3)
    assert head.conv_seg.in_channels == 16
    captured = {}

    def keep_input(module, args, output):
        captured['input'] = args[0]

    head.fuse.register_forward_hook(keep_input)
    levels = _pyramid(batch=1)
    head(levels)
    x = captured['input'].clone()
    assert x.shape == (1, 32, 32, 24)
    # Each level's channels occupy their own slice, upsampled to P2's size:
    # P2 unchanged, P5's slice a 8x upsampling of P5.
    torch.testing.assert_close(x[:, :8], levels[0])
    p5 = torch.nn.functional.interpolate(levels[3], size=(32, 24),
                                         mode='bilinear', align_corners=False)
    torch.testing.assert_close(x[:, 24:], p5)
    # Changing only P5 changes only the last slice.
    levels[3] = levels[3] + 1
    head(levels)
    torch.testing.assert_close(captured['input'][:, :24], x[:, :24])


def test_paper_head_is_not_the_semantic_fpn_head():
    fpn = Config.fromfile(str(CONFIG_DIR / 'fpn_x101_cfpd.py'))
    semfpn = Config.fromfile(str(CONFIG_DIR / 'semfpn_x101_cfpd.py'))
    assert fpn.model.decode_head.type == 'ConcatFPNHead'
    assert semfpn.model.decode_head.type == 'FPNHead'
    assert fpn.model.backbone == semfpn.model.backbone
    # The same pyramid but for the paper's equation 1 (no output convs).
    assert fpn.model.neck.type == 'PaperFPN' and semfpn.model.neck.type == \
        'FPN'
    assert dict(fpn.model.neck, type='FPN') == semfpn.model.neck


@pytest.mark.parametrize('model', MODELS)
@pytest.mark.parametrize('dataset', DATASETS)
def test_configs_follow_the_paper_recipe(model, dataset):
    cfg = Config.fromfile(str(CONFIG_DIR / f'{model}_{dataset}.py'))
    classes = {'cfpd': 23, 'fashionista': 25, 'ccp': 59}[dataset]
    assert cfg.model.decode_head.num_classes == classes
    if 'auxiliary_head' in cfg.model:
        assert cfg.model.auxiliary_head.num_classes == classes
    assert cfg.optim_wrapper.optimizer == dict(
        type='Adam', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    assert cfg.param_scheduler == []
    assert cfg.train_cfg.max_epochs == 100 and cfg.train_cfg.val_interval == 1
    assert cfg.train_dataloader.batch_size == 5
    assert cfg.default_hooks.checkpoint.save_best == 'aAcc'
    assert cfg.default_hooks.checkpoint.rule == 'greater'
    assert cfg.model.test_cfg.mode == 'whole'
    assert cfg.model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.model.data_preprocessor.std == [58.395, 57.12, 57.375]
    flips = [t for t in cfg.train_dataloader.dataset.pipeline
             if t.type == 'RandomFlip']
    assert flips and flips[0].prob == 0.5
    assert not any(t.type in ('Resize', 'RandomResize', 'RandomCrop')
                   for t in cfg.test_dataloader.dataset.pipeline)
    pretrained = {'fpn_x101': 'open-mmlab://resnext101_32x4d',
                  'semfpn_x101': 'open-mmlab://resnext101_32x4d',
                  'pspnet_r101': 'open-mmlab://resnet101_v1c',
                  'fcn_r101': 'open-mmlab://resnet101_v1c'}[model]
    assert cfg.model.pretrained == pretrained
    assert cfg.model.backbone.depth == 101


def _build(config):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as REGISTRY
    cfg = Config.fromfile(str(config))
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    if 'auxiliary_head' in cfg.model:
        cfg.model.auxiliary_head.norm_cfg = dict(type='BN',
                                                 requires_grad=True)
    return REGISTRY.build(cfg.model).eval()


def test_paper_neck_follows_equation_one():
    """P5 = L5(C5), P_i = nearest-upsampled P_{i+1} + L_i(C_i): no 3x3
    output convolution (MMSegmentation's FPN has one per level)."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as REGISTRY
    neck = REGISTRY.build(dict(type='PaperFPN', in_channels=[4, 6, 8, 10],
                               out_channels=5, num_outs=4,
                               upsample_cfg=dict(mode='nearest'))).eval()
    assert not hasattr(neck, 'fpn_convs')
    inputs = [torch.rand(1, c, 32 // 2**i, 24 // 2**i)
              for i, c in enumerate([4, 6, 8, 10])]
    with torch.no_grad():
        outputs = neck(inputs)
        lateral = [conv(x) for conv, x in zip(neck.lateral_convs, inputs)]
    expected = lateral[3]
    torch.testing.assert_close(outputs[3], expected)
    for i in (2, 1, 0):
        expected = lateral[i] + expected.repeat_interleave(
            2, 2).repeat_interleave(2, 3)
        torch.testing.assert_close(outputs[i], expected)


def test_paper_model_has_the_paper_neck_and_semantic_fpn_keeps_its_own():
    paper = Config.fromfile(str(CONFIG_DIR / 'fpn_x101_cfpd.py')).model.neck
    semantic = Config.fromfile(
        str(CONFIG_DIR / 'semfpn_x101_cfpd.py')).model.neck
    assert paper.type == 'PaperFPN' and semantic.type == 'FPN'
    paper_neck = _build(CONFIG_DIR / 'fpn_x101_cfpd.py').neck
    semantic_neck = _build(CONFIG_DIR / 'semfpn_x101_cfpd.py').neck
    assert not hasattr(paper_neck, 'fpn_convs')
    assert [c.conv.kernel_size for c in semantic_neck.fpn_convs] == \
        [(3, 3)] * 4


@pytest.mark.parametrize('model', MODELS)
def test_test_time_geometry_is_training_geometry(model):
    """At test time a 600 x 400 photo is padded to 608 x 416 as in
    training, every top-down step of the FPN models is an exact doubling,
    and the prediction is cropped back to the photo."""
    from mmseg.structures import SegDataSample
    net = _build(CONFIG_DIR / 'demo' / f'{model}_ccp.py')
    shapes = {}
    net.backbone.register_forward_hook(
        lambda module, args, output: shapes.update(
            input=tuple(args[0].shape[2:]),
            levels=[tuple(x.shape[2:]) for x in output]))
    height, width = 400, 600
    sample = SegDataSample(metainfo=dict(
        ori_shape=(height, width), img_shape=(height, width)))
    data = dict(inputs=[torch.randint(0, 255, (3, height, width),
                                      dtype=torch.uint8)],
                data_samples=[sample])
    with torch.no_grad():
        (result,) = net.test_step(data)
    assert shapes['input'] == (416, 608)
    assert result.pred_sem_seg.shape == (height, width)
    if model in ('fpn_x101', 'semfpn_x101'):
        levels = shapes['levels']
        for finer, coarser in zip(levels, levels[1:]):
            assert finer == (2 * coarser[0], 2 * coarser[1]), levels
