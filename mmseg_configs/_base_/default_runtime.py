# Runtime shared by every config of the harness: MMSegmentation's
# default_runtime, plus the project's registrations (its modules and its
# datasets) and checkpoints that load under torch's weights-only unpickler
# (fashionseg/checkpoints/loading.py).
default_scope = 'mmseg'
custom_imports = dict(
    imports=['fashionseg.mmseg_modules', 'custom_datasets.mmseg_datasets'],
    allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Training curves to DVCLive for `dvc plots` (tools/train.py puts its folder
# at WORK_DIR/dvclive).
vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='SafeDVCLiveVisBackend')
]
# No fixed name: the Runner then names the visualizer after the experiment,
# so that runs in one process (sweeps, tests) each log to their own backends.
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
custom_hooks = [dict(type='PlainCheckpointHook')]

tta_model = dict(type='SegTTAModel')
