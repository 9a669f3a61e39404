# Baseline: FCN, ResNet-101-D8,
# on CFPD (23 classes), trained with the paper's recipe.
_base_ = [
    './_base_/models/fcn_r101.py', './_base_/datasets/cfpd.py',
    './_base_/default_runtime.py', './_base_/schedules/paper_adam_100e.py'
]
model = dict(
    decode_head=dict(num_classes=23), auxiliary_head=dict(num_classes=23))
