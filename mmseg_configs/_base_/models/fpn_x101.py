# The paper's model (Martinsson and Mogren 2019, section 2): ResNeXt-101
# (32x4d) features C2..C5, the paper's FPN neck (equation 1: lateral 1x1
# convolutions and a nearest-neighbour top-down pathway, without the 3x3
# output convolutions of MMSegmentation's FPN; fashionseg.models.PaperFPN),
# and the paper's head:
# the four levels upsampled to P2's size, concatenated, two convolutions
# (fashionseg.models.ConcatFPNHead).
_base_ = ['./semfpn_x101.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    neck=dict(type='PaperFPN'),
    decode_head=dict(
        _delete_=True,
        type='ConcatFPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.0,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
