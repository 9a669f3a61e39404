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
