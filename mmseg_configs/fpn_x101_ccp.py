# The paper's model: ResNeXt-101 (32x4d) FPN with the paper's concatenating
# head, on CCP (59 classes), trained with the paper's recipe.
_base_ = [
    './_base_/models/fpn_x101.py', './_base_/datasets/ccp.py',
    './_base_/default_runtime.py', './_base_/schedules/paper_adam_100e.py'
]
model = dict(decode_head=dict(num_classes=59))
