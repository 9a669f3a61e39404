# Baseline: MMSegmentation's PSPNet on ResNet-101-D8 (ResNetV1c, dilated),
# ImageNet-pretrained.
_base_ = ['mmseg::_base_/models/pspnet_r50-d8.py']
model = dict(
    # Whole images of any size, padded to a multiple of 32 in training and
    # in testing alike, so that every feature map has the same geometry
    # (each top-down step an exact doubling); predictions and saved scores
    # are cropped back to the image.
    data_preprocessor=dict(size_divisor=32, test_cfg=dict(size_divisor=32)),
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101))
