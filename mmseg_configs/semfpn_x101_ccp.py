# MMSegmentation's semantic FPN head on the paper's ResNeXt-101 (32x4d) FPN,
# on CCP (59 classes), trained with the paper's recipe.
_base_ = [
    './_base_/models/semfpn_x101.py', './_base_/datasets/ccp.py',
    './_base_/default_runtime.py', './_base_/schedules/paper_adam_100e.py'
]
model = dict(decode_head=dict(num_classes=59))
