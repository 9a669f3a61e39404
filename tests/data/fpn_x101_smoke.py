# MMSegmentation's semantic-FPN model with the paper's ResNeXt-101 (32x4d)
# backbone, as the stack smoke test builds it (no pretrained weights).
_base_ = ['mmseg::_base_/models/fpn_r50.py']
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNeXt', depth=101, groups=32, base_width=4,
        norm_cfg=norm_cfg),
    decode_head=dict(num_classes=23, norm_cfg=norm_cfg))
