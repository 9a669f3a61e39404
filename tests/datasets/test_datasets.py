"""The datasets as MMSegmentation sees them."""
import numpy as np
import pytest
import scipy.io
from mmengine.registry import init_default_scope
from raw_formats import BUNDLED_CCP

import custom_datasets.mmseg_datasets  # noqa: F401  (registers them)
from custom_datasets import CCP_CLASSES, CFPD_CLASSES, FASHIONISTA_CLASSES
from custom_datasets.convert import convert_release


@pytest.mark.parametrize('name,classes,count', [
    ('FashionistaDataset', FASHIONISTA_CLASSES, 25),
    ('CFPDDataset', CFPD_CLASSES, 23),
    ('CCPDataset', CCP_CLASSES, 59),
])
def test_registered_with_classes_and_palette(name, classes, count):
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    dataset_cls = DATASETS.get(name)
    assert dataset_cls is not None
    meta = dataset_cls.METAINFO
    assert len(meta['classes']) == count == len(classes)
    assert meta['classes'][0] in ('background', 'bk', 'null')
    assert len(meta['palette']) == count
    assert len({tuple(c) for c in meta['palette']}) == count


def test_ccp_dataset_loads_converted_split(tmp_path):
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    root = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, root)
    dataset = DATASETS.build(dict(
        type='CCPDataset', data_root=str(root),
        data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')]))
    assert len(dataset) == 6
    assert dataset.metainfo['reduce_zero_label'] is False
    sample = dataset[0]
    stem = sample['data_samples'].img_path.split('/')[-1][:-4]
    truth = scipy.io.loadmat(str(BUNDLED_CCP / 'annotations' / 'pixel-level' /
                                 f'{stem}.mat'))['groundtruth']
    # Background stays label 0: nothing is shifted or ignored.
    np.testing.assert_array_equal(
        sample['data_samples'].gt_sem_seg.data[0].numpy(), truth)
    assert sample['inputs'].shape[1:] == truth.shape
