"""The fraction of a GPU's arithmetic a rate uses: operations counted as
PyTorch counts them (two per multiply-add), against the datasheet peak
of the named GPU."""
import pytest
import torch

from fashionseg.benchmarks.arithmetic import (count_flops, fraction_of_peak,
                                              peak_tflops)


def test_a_convolution_costs_two_operations_per_multiply_add():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    image = torch.zeros(2, 3, 10, 10)
    # 8 output channels x 3 inputs x 9 taps x 100 positions x 2 images.
    assert count_flops(lambda: conv(image)) == 2 * 8 * 3 * 9 * 100 * 2


def test_the_peak_is_the_named_gpus_at_the_precision_asked():
    assert peak_tflops('NVIDIA H200', 'bf16') == 989.0
    assert peak_tflops('NVIDIA H100 80GB HBM3', 'tf32') == 494.0
    # fp32 with TF32 off (the engine's reference) runs on the plain cores.
    assert peak_tflops('NVIDIA H100 80GB HBM3', 'fp32') == 67.0
    assert peak_tflops('NVIDIA A100-SXM4-80GB', 'fp16') == 312.0
    assert peak_tflops('cpu', 'fp32') is None
    assert fraction_of_peak(1000, 2e11, 'NVIDIA H200', 'bf16') == \
        pytest.approx(2e14 / 989e12)
    assert fraction_of_peak(1000, 2e11, 'Some GPU', 'bf16') is None


def test_a_forward_is_counted_on_the_meta_device_at_its_padded_size():
    """The projection's operations per image: counted without weights or
    arithmetic, at the size the data preprocessor pads to (600 x 400 is
    608 x 416 for the size divisor 32), equal to a real forward's count."""
    from mmengine.config import Config
    from mmseg.registry import MODELS

    from fashionseg.benchmarks.arithmetic import forward_flops_per_image
    config = 'mmseg_configs/demo/fpn_x101_ccp.py'
    counted = forward_flops_per_image(config, (100, 60))
    model = MODELS.build(Config.fromfile(config).model).eval()
    with torch.no_grad():
        real = count_flops(lambda: model(torch.zeros(1, 3, 128, 64),
                                         mode='tensor'))
    assert counted == real > 0
    assert forward_flops_per_image(config, (128, 64)) == real
    # At the paper's size: PSPNet's dilated ResNet-101 costs more than the
    # paper's FPN (measured: 494 and 159 GFLOP).
    fpn, psp = (forward_flops_per_image(f'mmseg_configs/{m}_cfpd.py',
                                        (600, 400))
                for m in ('fpn_x101', 'pspnet_r101'))
    assert 1e11 < fpn < psp


def test_the_training_count_adds_the_auxiliary_heads():
    """PSPNet and FCN train an auxiliary head on the backbone's third
    stage (not run at inference): the training count includes it, the
    paper's FPN has none."""
    from fashionseg.benchmarks.arithmetic import forward_flops_per_image
    psp, fpn = ('mmseg_configs/pspnet_r101_cfpd.py',
                'mmseg_configs/fpn_x101_cfpd.py')
    assert forward_flops_per_image(psp, (64, 64), auxiliary=True) > \
        forward_flops_per_image(psp, (64, 64))
    assert forward_flops_per_image(fpn, (64, 64), auxiliary=True) == \
        forward_flops_per_image(fpn, (64, 64))
