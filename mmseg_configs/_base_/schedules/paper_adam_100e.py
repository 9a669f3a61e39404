# The paper's training recipe (Martinsson and Mogren 2019, section 4): Adam,
# learning rate 1e-4, betas (0.9, 0.999), no weight decay and no learning
# rate decay, 100 epochs, validation every epoch, and the checkpoint with the
# highest validation pixel accuracy is the final model. (Batch size 5 and the
# horizontal flip are in _base_/datasets/fashion_parsing.py.)
optimizer = dict(type='Adam', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=1)
# Validation through the batched inference engine (the labels of one
# image at a time, eager fp32), in batches of val_dataloader.batch_size.
val_cfg = dict(type='SegmenterValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook with atomic saves and deferred removals
    # (fashionseg/checkpoints/saving.py): an interrupted save loses
    # no checkpoint. Only what selection and resume need is written: the
    # best-validation weights whenever they improve (weights only), and
    # the whole state (with Adam's, about three times the weights) every
    # 5 epochs and at the end, to resume from.
    checkpoint=dict(
        type='SafeCheckpointHook',
        by_epoch=True,
        interval=5,
        max_keep_ckpts=1,
        save_best='aAcc',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
