# MMSegmentation's semantic FPN (FPN neck + FPNHead, which sums per-level
# heads) on the paper's backbone: ResNeXt-101 (32x4d), ImageNet-pretrained.
_base_ = ['mmseg::_base_/models/fpn_r50.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    # Whole images of any size, padded to a multiple of 32 in training and
    # in testing alike, so that every feature map has the same geometry
    # (each top-down step an exact doubling); predictions and saved scores
    # are cropped back to the image.
    data_preprocessor=dict(size_divisor=32, test_cfg=dict(size_divisor=32)),
    pretrained='open-mmlab://resnext101_32x4d',
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=4,
        norm_cfg=norm_cfg),
    neck=dict(upsample_cfg=dict(mode='nearest')),
    decode_head=dict(norm_cfg=norm_cfg))
