# Demo stand-in for fpn_x101_ccp.py (`make demo`): the same model and
# recipe with a narrow backbone and neck and no ImageNet weights, so that a
# 2-core CPU trains it on the bundled 30-photo CCP subset in seconds. Not the
# paper's model.
_base_ = ['../fpn_x101_ccp.py']
model = dict(
    pretrained=None,
    backbone=dict(
        depth=50, groups=2, base_width=4, base_channels=16,
        stem_channels=16, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=16))
train_dataloader = dict(num_workers=2, persistent_workers=False)
val_dataloader = dict(num_workers=1, persistent_workers=False)
test_dataloader = dict(num_workers=1, persistent_workers=False)
# From-scratch narrow models on 21 photos learn little under the paper's
# flat learning rate in a few minutes: the demo decays it (poly, over
# params.yaml's demo.train.epochs) and validates every 5 epochs.
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=50,
         by_epoch=True)
]
train_cfg = dict(val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5))
