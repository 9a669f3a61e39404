# Data settings shared by the fashion-parsing datasets, following the paper
# (section 4): random horizontal flip as the only augmentation, batch size 5,
# whole images at their native size (ImageNet mean / std normalisation is in
# the models' data_preprocessor). Each dataset file sets type and data_root.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=5,
    # Enough decoding workers to keep a GPU fed (tools/benchmark_train.py
    # tells whether the loop is input-bound); tools/train.py adds pinned
    # memory and a deeper prefetch on a GPU.
    num_workers=8,
    persistent_workers=True,
    # The last batch of an epoch would hold 411 mod 5 = 1 Fashionista image,
    # and BatchNorm after PSPNet's 1x1 pooling cannot train on a single
    # value per channel; the sampler reshuffles every epoch, so no image is
    # left out for good.
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
# Validation in batches: the engine's validation loop gives every image the
# labels it would get alone (images of other sizes run apart).
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        data_prefix=dict(
            img_path='img_dir/test', seg_map_path='ann_dir/test'),
        pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
