# Demo stand-in for fcn_r101_ccp.py (`make demo`): the same model and
# recipe with a narrow ResNet-18-D8 backbone and no ImageNet weights, so that
# a 2-core CPU trains it on the bundled 30-photo CCP subset in seconds. Not
# the paper's baseline.
_base_ = ['../fcn_r101_ccp.py']
model = dict(
    pretrained=None,
    backbone=dict(depth=18, base_channels=16, stem_channels=16,
                  init_cfg=None),
    decode_head=dict(in_channels=128, channels=16),
    auxiliary_head=dict(in_channels=64, channels=16))
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
