import os
import sys
from pathlib import Path

# Under pytest-xdist (make test runs one worker per core), each worker and
# the tools it starts use one thread, so that the workers do not fight
# over the cores; set before numpy and torch are imported.
if os.environ.get('PYTEST_XDIST_WORKER'):
    for _name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                  'OPENBLAS_NUM_THREADS'):
        os.environ[_name] = '1'

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The demo pipeline run shared by the files that read it (demo_clone).
pytest_plugins = ['demo_clone']


@pytest.fixture(scope='session', autouse=True)
def skip_mmengine_dataset_gc():
    """mmengine's BaseDataset runs a full ``gc.collect()`` after packing
    each dataset's annotation list (to hand that memory back at once):
    0.15 to 0.45 s per dataset in a process that holds torch and the test
    session (37 times, 16.6 s, in tests/runner and tests/checkpoints
    alone). The tests' datasets are a few photos; the packing itself
    still runs, and so does Python's own collection. Only this session's
    processes skip it: the tools and pipeline stages the tests start do
    not."""
    import types

    from mmengine.dataset import base_dataset
    base_dataset.gc = types.SimpleNamespace(collect=lambda *args: 0)


# The longest files first: under pytest-xdist's --dist loadfile each file
# runs on one worker, and a long file started last would run alone at
# the end (make test keeps this order: --no-loadscope-reorder).
LONGEST_FIRST = ('pipeline/test_pipeline.py', 'pipeline/test_demo_grid.py',
                 'inference/test_segmenter.py', 'pipeline/test_grid.py',
                 'gpu_check/test_gpu_check.py')


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.path.as_posix()
        return next((position for position, name in
                     enumerate(LONGEST_FIRST) if path.endswith(name)),
                    len(LONGEST_FIRST))
    items.sort(key=rank)  # stable: each file keeps its order


def write_synthetic_seg_dataset(root: Path, num_images: int = 4,
                                size=(48, 40), num_classes: int = 3,
                                seed: int = 0) -> Path:
    """Images of coloured rectangles and their label maps, in mmseg's
    ``img_dir``/``ann_dir`` layout, for tests that need a trainable set."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split in ('train', 'val'):
        (root / 'img_dir' / split).mkdir(parents=True)
        (root / 'ann_dir' / split).mkdir(parents=True)
        for i in range(num_images):
            label = np.zeros((h, w), np.uint8)
            for cls in range(1, num_classes):
                y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
                label[y:y + rng.integers(6, h // 2),
                      x:x + rng.integers(6, w // 2)] = cls
            colours = np.array([[30, 30, 30], [200, 40, 40], [40, 200, 40],
                                [40, 40, 200]], np.uint8)
            image = colours[label % len(colours)]
            image = np.clip(image + rng.integers(0, 20, image.shape), 0,
                            255).astype(np.uint8)
            cv2.imwrite(str(root / 'img_dir' / split / f'{i:04d}.png'), image)
            cv2.imwrite(str(root / 'ann_dir' / split / f'{i:04d}.png'), label)
    return root


def tiny_segmentor_cfg(num_classes: int = 3) -> dict:
    """A small FCN on a narrow ResNet-18: trains in seconds on a CPU."""
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size_divisor=8),
        backbone=dict(
            type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
            num_stages=4, out_indices=(0, 1, 2, 3), norm_cfg=norm_cfg),
        decode_head=dict(
            type='FCNHead', in_channels=64, in_index=3, channels=16,
            num_convs=1, concat_input=False, num_classes=num_classes,
            norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def tiny_runner_cfg(data_root: Path, work_dir: Path, max_epochs: int = 1,
                    num_classes: int = 3):
    """A full mmengine config on the harness's default runtime."""
    from mmengine.config import Config

    cfg = Config.fromfile(
        str(REPO / 'mmseg_configs' / '_base_' / 'default_runtime.py'))
    metainfo = dict(classes=tuple(f'c{i}' for i in range(num_classes)),
                    palette=[[i * 60, i * 60, i * 60]
                             for i in range(num_classes)])
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ]

    def loader(split, pipeline, shuffle):
        return dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=shuffle),
            dataset=dict(
                type='BaseSegDataset', data_root=str(data_root),
                metainfo=metainfo, img_suffix='.png', seg_map_suffix='.png',
                data_prefix=dict(img_path=f'img_dir/{split}',
                                 seg_map_path=f'ann_dir/{split}'),
                pipeline=pipeline))

    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        test_pipeline=test_pipeline,
        model=tiny_segmentor_cfg(num_classes),
        train_dataloader=loader('train', train_pipeline, True),
        val_dataloader=loader('val', test_pipeline, False),
        test_dataloader=loader('val', test_pipeline, False),
        val_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        optim_wrapper=dict(type='OptimWrapper',
                           optimizer=dict(type='Adam', lr=1e-3)),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                       val_interval=1),
        val_cfg=dict(type='ValLoop'),
        test_cfg=dict(type='TestLoop'),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1,
                            save_best='aAcc', rule='greater'),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        randomness=dict(seed=0),
    ))
    return cfg


@pytest.fixture
def synthetic_dataset(tmp_path):
    return write_synthetic_seg_dataset(tmp_path / 'data')


def file_mode() -> int:
    """The mode a plain write gives a file here (0666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.fixture
def torchvision_decoding_by_opencv(monkeypatch):
    """``torchvision.io.decode_jpeg`` as torchvision defines it (a list of
    1-D uint8 tensors, mode RGB, a device; 3 x H x W uint8 RGB tensors
    back), decoding with OpenCV, for the engine's ``decode=device`` where
    torchvision is not installed (it does not import beside this
    machine's torch): the engine's side of it (channel order, shapes,
    batching, agreement) is then checked against mmcv's decoding of the
    same bytes. The number of images of each call goes into the list
    returned."""
    import enum
    import types

    import torch
    calls = []

    class ImageReadMode(enum.Enum):
        UNCHANGED, RGB = 0, 3

    def decode_jpeg(encoded, mode=ImageReadMode.UNCHANGED, device='cpu'):
        assert isinstance(encoded, list) and mode == ImageReadMode.RGB
        calls.append(len(encoded))
        images = [cv2.imdecode(e.numpy(), cv2.IMREAD_COLOR)
                  for e in encoded]
        return [torch.from_numpy(np.ascontiguousarray(
            i[:, :, ::-1].transpose(2, 0, 1))).to(device) for i in images]
    package = types.ModuleType('torchvision')
    package.io = types.ModuleType('torchvision.io')
    package.io.decode_jpeg = decode_jpeg
    package.io.ImageReadMode = ImageReadMode
    monkeypatch.setitem(sys.modules, 'torchvision', package)
    monkeypatch.setitem(sys.modules, 'torchvision.io', package.io)
    return calls
