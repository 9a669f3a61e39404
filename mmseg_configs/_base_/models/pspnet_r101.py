# Baseline: MMSegmentation's PSPNet on ResNet-101-D8 (ResNetV1c, dilated),
# ImageNet-pretrained.
_base_ = ['mmseg::_base_/models/pspnet_r50-d8.py']
model = dict(
    # Whole images of any size; batches are padded to a multiple of 32.
    data_preprocessor=dict(size_divisor=32),
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101))
