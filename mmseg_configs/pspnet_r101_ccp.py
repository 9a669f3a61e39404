# Baseline: PSPNet, ResNet-101-D8,
# on CCP (59 classes), trained with the paper's recipe.
_base_ = [
    './_base_/models/pspnet_r101.py', './_base_/datasets/ccp.py',
    './_base_/default_runtime.py', './_base_/schedules/paper_adam_100e.py'
]
model = dict(
    decode_head=dict(num_classes=59), auxiliary_head=dict(num_classes=59))
