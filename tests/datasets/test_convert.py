"""tools/convert_data.py on files in the releases' raw formats."""
import hashlib
import json

import cv2
import numpy as np
import pytest
import scipy.io
from conftest import file_mode
from raw_formats import (BUNDLED_CCP, SHARED_CCP, fashionista_samples,
                         png_bytes, write_cfpd, write_fashionista_v7,
                         write_fashionista_v73)
from tool_process import run_tool

from custom_datasets import DatasetFormatError
from custom_datasets.convert import convert_release

TEST_POSITIONS = [2, 5, 9]


def read_label(path):
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert label is not None and label.dtype == np.uint8 and label.ndim == 2
    return label


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()
                                                      ).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def check_fashionista_output(out, samples):
    splits = {s: (out / 'splits' / f'{s}.txt').read_text().split()
              for s in ('train', 'val', 'test')}
    assert splits['test'] == ['0002', '0005', '0009']
    # Of the other 9 positions in order, the 10th would be validation: none.
    assert splits['val'] == []
    assert splits['train'] == ['0001', '0003', '0004', '0006', '0007',
                               '0008', '0010', '0011', '0012']
    for split, stems in splits.items():
        for stem in stems:
            jpeg, label = samples[int(stem) - 1]
            assert (out / 'img_dir' / split / f'{stem}.jpg').read_bytes() \
                == jpeg
            np.testing.assert_array_equal(
                read_label(out / 'ann_dir' / split / f'{stem}.png'), label)


@pytest.mark.parametrize('writer', [write_fashionista_v7,
                                    write_fashionista_v73])
def test_fashionista_converts_both_mat_versions(tmp_path, writer):
    samples = fashionista_samples(12)
    (tmp_path / 'raw').mkdir()
    writer(tmp_path / 'raw' / 'fashionista-v1.0.mat', samples,
           TEST_POSITIONS)
    out = tmp_path / 'fashionista'
    counts = convert_release('fashionista', tmp_path / 'raw', out)
    assert counts == {'train': 9, 'val': 0, 'test': 3}
    check_fashionista_output(out, samples)


def test_fashionista_validation_is_every_tenth_remaining(tmp_path):
    samples = fashionista_samples(25)
    (tmp_path / 'raw').mkdir()
    write_fashionista_v7(tmp_path / 'raw' / 'fashionista-v1.0.mat', samples,
                         [1, 2, 3])
    out = tmp_path / 'out'
    convert_release('fashionista', tmp_path / 'raw', out)
    # Remaining positions are 4..25; their 10th and 20th are 13 and 23.
    assert (out / 'splits' / 'val.txt').read_text().split() == \
        ['0013', '0023']


def test_cfpd_converts_superpixels_to_label_maps(tmp_path):
    expected = write_cfpd(tmp_path / 'raw', count=10)
    out = tmp_path / 'cfpd'
    counts = convert_release('cfpd', tmp_path / 'raw', out)
    # N = 10: v = 0, t = 2, r = 8: test 9..10, no validation.
    assert counts == {'train': 8, 'val': 0, 'test': 2}
    ids = list(expected)
    assert (out / 'splits' / 'test.txt').read_text().split() == ids[8:]
    assert (out / 'splits' / 'train.txt').read_text().split() == ids[:8]
    for split, stems in (('train', ids[:8]), ('test', ids[8:])):
        for stem in stems:
            label = read_label(out / 'ann_dir' / split / f'{stem}.png')
            assert label.shape == (600, 400)
            np.testing.assert_array_equal(label, expected[stem])
            assert (out / 'img_dir' / split / f'{stem}.jpg').read_bytes() \
                == (tmp_path / 'raw' / 'image' / f'{stem}.jpg').read_bytes()


def test_ccp_converts_bundled_subset(tmp_path):
    out = tmp_path / 'ccp'
    counts = convert_release('ccp', BUNDLED_CCP, out)
    assert counts == {'train': 21, 'val': 3, 'test': 6}
    meta = json.loads((out / 'dataset.json').read_text())
    assert meta['name'] == 'ccp' and meta['splits'] == counts
    assert len(meta['classes']) == 59 and meta['classes'][0] == 'null'
    assert (out / 'splits' / 'val.txt').read_text().split() == \
        ['0001', '0011', '0021']
    assert (out / 'splits' / 'test.txt').read_text().split() == \
        ['0005', '0010', '0015', '0020', '0025', '0030']
    for split in ('train', 'val', 'test'):
        for stem in (out / 'splits' / f'{split}.txt').read_text().split():
            truth = scipy.io.loadmat(str(
                BUNDLED_CCP / 'annotations' / 'pixel-level' /
                f'{stem}.mat'))['groundtruth']
            np.testing.assert_array_equal(
                read_label(out / 'ann_dir' / split / f'{stem}.png'), truth)
            assert (out / 'img_dir' / split / f'{stem}.jpg').read_bytes() \
                == (BUNDLED_CCP / 'photos' / f'{stem}.jpg').read_bytes()


def test_conversion_is_deterministic(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    convert_release('ccp', BUNDLED_CCP, first)
    convert_release('ccp', BUNDLED_CCP, second)
    assert tree_digest(first) == tree_digest(second)
    # A rerun over an existing output replaces it with identical bytes.
    convert_release('ccp', BUNDLED_CCP, first)
    assert tree_digest(first) == tree_digest(second)


@pytest.mark.skipif(not SHARED_CCP.is_dir(), reason='../shared CCP absent')
def test_full_shared_ccp_converts(tmp_path):
    out = tmp_path / 'ccp'
    counts = convert_release('ccp', SHARED_CCP, out)
    assert counts == {'train': 703, 'val': 101, 'test': 200}
    stems = sorted(p.stem for p in (out / 'ann_dir').rglob('*.png'))
    assert len(stems) == 1004 and stems[0] == '0001' and stems[-1] == '1004'
    label = read_label(out / 'ann_dir' / 'test' / '1000.png')
    truth = scipy.io.loadmat(str(SHARED_CCP / 'annotations' / 'pixel-level' /
                                 '1000.mat'))['groundtruth']
    np.testing.assert_array_equal(label, truth)


def test_convert_cli_writes_layout(tmp_path):
    out = tmp_path / 'ccp'
    result = run_tool('convert_data.py', 'ccp', '--src', BUNDLED_CCP,
                      '--out', out)
    assert result.returncode == 0, result.stderr
    assert 'train 21, val 3, test 6' in result.stdout
    assert len(list((out / 'img_dir' / 'train').glob('*.jpg'))) == 21


# Bad input: each stops with the file, the record and the problem, and
# leaves nothing in OUT.

def _fashionista_raw(tmp_path, **kwargs):
    samples = kwargs.pop('samples', None) or fashionista_samples(6)
    (tmp_path / 'raw').mkdir(exist_ok=True)
    write_fashionista_v7(tmp_path / 'raw' / 'fashionista-v1.0.mat', samples,
                         [2], **kwargs)
    return tmp_path / 'raw'


def _expect_failure(tmp_path, dataset, src, *fragments):
    out = tmp_path / 'out'
    with pytest.raises(DatasetFormatError) as info:
        convert_release(dataset, src, out)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.out')]
    return message


def test_missing_variable(tmp_path):
    src = _fashionista_raw(tmp_path, drop=('test_index',))
    _expect_failure(tmp_path, 'fashionista', src, 'fashionista-v1.0.mat',
                    '"test_index" is missing')


def test_missing_field(tmp_path):
    src = _fashionista_raw(tmp_path, drop=('annotation',))
    _expect_failure(tmp_path, 'fashionista', src, 'fashionista-v1.0.mat',
                    'field of truths "annotation" is missing')


def test_cfpd_missing_struct_field(tmp_path):
    write_cfpd(tmp_path / 'raw', count=4, drop_field='category_label')
    _expect_failure(tmp_path, 'cfpd', tmp_path / 'raw',
                    'fashon_parsing_data.mat', 'record 1',
                    '"category_label" is missing')


def test_reference_that_does_not_resolve(tmp_path):
    (tmp_path / 'raw').mkdir()
    write_fashionista_v73(tmp_path / 'raw' / 'fashionista-v1.0.mat',
                          fashionista_samples(5), [2], null_ref_at=3)
    _expect_failure(tmp_path, 'fashionista', tmp_path / 'raw',
                    'fashionista-v1.0.mat', 'record 4 (0004)',
                    'reference that does not resolve')


def test_label_outside_class_range(tmp_path):
    samples = fashionista_samples(6)
    bad = samples[4][1].copy()
    bad[10, 10] = 30
    annotations = [png_bytes(label) for _, label in samples]
    annotations[4] = png_bytes(bad)
    src = _fashionista_raw(tmp_path, samples=samples, annotations=annotations)
    _expect_failure(tmp_path, 'fashionista', src, 'fashionista-v1.0.mat',
                    'record 5 (0005)', '[30]', 'outside 0..24')


def test_label_map_size_differs_from_photo(tmp_path):
    samples = fashionista_samples(6)
    annotations = [png_bytes(label) for _, label in samples]
    annotations[2] = png_bytes(samples[2][1][:-7])
    src = _fashionista_raw(tmp_path, samples=samples, annotations=annotations)
    _expect_failure(tmp_path, 'fashionista', src, 'record 3 (0003)',
                    'label map is', 'but the photo is')


def test_photo_that_does_not_decode(tmp_path):
    samples = fashionista_samples(6)
    jpeg, label = samples[1]
    samples[1] = (jpeg[:600], label)  # a JPEG cut short
    src = _fashionista_raw(tmp_path, samples=samples)
    _expect_failure(tmp_path, 'fashionista', src, 'record 2 (0002)',
                    'photo does not decode')


def test_missing_photo_in_image_folder(tmp_path):
    write_cfpd(tmp_path / 'raw', count=5, omit_photo=3)
    _expect_failure(tmp_path, 'cfpd', tmp_path / 'raw',
                    'fashon_parsing_data.mat', 'record 4', 'is missing')


def test_superpixel_without_category(tmp_path):
    write_cfpd(tmp_path / 'raw', count=4, bad_superpixel_at=2)
    _expect_failure(tmp_path, 'cfpd', tmp_path / 'raw', 'record 3',
                    'category_label has')


def test_wrong_class_names(tmp_path):
    names = list(__import__('raw_formats').CFPD_NAMES)
    names[3], names[4] = names[4], names[3]
    write_cfpd(tmp_path / 'raw', count=3, names=names)
    _expect_failure(tmp_path, 'cfpd', tmp_path / 'raw', 'all_category_name',
                    "3: 'blazer' (expected 'belt')")


def test_failed_conversion_keeps_previous_dataset(tmp_path):
    out = tmp_path / 'out'
    convert_release('ccp', BUNDLED_CCP, out)
    before = tree_digest(out)
    src = _fashionista_raw(tmp_path, drop=('labels',))
    with pytest.raises(DatasetFormatError):
        convert_release('fashionista', src, out)
    assert tree_digest(out) == before
    # A release that fails on its last record, after every other image
    # has been written: the previous dataset is still whole, and nothing
    # half-written is left beside it.
    stems = sorted(p.stem for p in
                   (BUNDLED_CCP / 'annotations' / 'pixel-level').glob('*'))
    last = stems[-1]
    label = scipy.io.loadmat(str(BUNDLED_CCP / 'annotations' /
                                 'pixel-level' / f'{last}.mat'))['groundtruth']
    bad = _ccp_copy_with_groundtruth(tmp_path, last, label + 100)
    result = _convert_cli(bad, out)
    assert result.returncode == 2 and f'({last})' in result.stderr
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()
                  if p.name.startswith('.')) == []


def _convert_cli(src, out):
    return run_tool('convert_data.py', 'ccp', '--src', src, '--out', out)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*'))


@pytest.mark.parametrize('where', ['parent', 'same'])
def test_convert_refuses_an_out_that_holds_the_release(tmp_path, where):
    import shutil
    src = tmp_path / 'data' / 'raw' / 'ccp'
    shutil.copytree(BUNDLED_CCP, src)
    before = _files(tmp_path / 'data')
    out = tmp_path / 'data' if where == 'parent' else src
    result = _convert_cli(src, out)
    assert result.returncode == 2
    assert result.stderr.startswith('error: --out')
    assert 'is or holds --src' in result.stderr
    assert _files(tmp_path / 'data') == before


def test_convert_leaves_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / 'results'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    result = _convert_cli(BUNDLED_CCP, out)
    assert result.returncode == 2
    assert 'not a dataset written by tools/convert_data.py' in result.stderr
    assert _files(out) == ['notes.txt']
    assert (out / 'notes.txt').read_text() == 'mine'
    # A dataset this tool wrote is replaced, as a rerun expects; one that
    # holds a file it did not write, at any depth, is left as it is.
    converted = tmp_path / 'ccp'
    assert _convert_cli(BUNDLED_CCP, converted).returncode == 0
    assert _convert_cli(BUNDLED_CCP, converted).returncode == 0
    for added in ('img_dir/train/stray.jpg', 'ann_dir/mine/labels.png',
                  'splits/notes.txt'):
        path = converted / added
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'x')
        result = _convert_cli(BUNDLED_CCP, converted)
        assert result.returncode == 2
        assert 'it holds files it did not write: ' in result.stderr
        assert added in result.stderr
        assert path.read_bytes() == b'x'
        path.unlink()
        if path.parent.name == 'mine':
            path.parent.rmdir()
    # An --out within the release, or under a file.
    result = _convert_cli(BUNDLED_CCP, tmp_path / 'copy')
    assert result.returncode == 0
    for out, why in ((tmp_path / 'copy' / 'photos' / 'out', None),
                     (tmp_path / 'notes.txt' / 'ccp', 'is a file')):
        if why is None:
            result = run_tool('convert_data.py', 'ccp', '--src',
                              tmp_path / 'copy', '--out', out)
            assert 'lies within --src' in result.stderr
        else:
            (tmp_path / 'notes.txt').write_text('mine')
            result = _convert_cli(BUNDLED_CCP, out)
            assert why in result.stderr
        assert result.returncode == 2 and not out.exists()


@pytest.mark.parametrize('dataset_json', ['{}', '{"name": "x", ', None])
def test_convert_leaves_a_folder_with_a_dataset_json_and_other_files(
        tmp_path, dataset_json):
    """A folder is replaced only when it is the converter's dataset and
    nothing else: a user's folder that holds a ``dataset.json`` of its own
    (or the converter's beside other files) keeps every file."""
    out = tmp_path / 'project'
    (out / 'sub').mkdir(parents=True)
    (out / 'thesis.tex').write_text('draft')
    (out / 'sub' / 'results.csv').write_text('x')
    if dataset_json is None:  # the converter's own, beside the user's
        converted = tmp_path / 'ccp'
        assert _convert_cli(BUNDLED_CCP, converted).returncode == 0
        dataset_json = (converted / 'dataset.json').read_text()
    (out / 'dataset.json').write_text(dataset_json)
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    result = _convert_cli(BUNDLED_CCP, out)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'not a dataset written by tools/convert_data.py' in result.stderr
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} \
        == before
    # Only the converter's folder, with a damaged dataset.json, is named
    # so; the user's files are named when they are there.
    assert 'it holds sub, thesis.tex' in result.stderr


def _ccp_copy_with_groundtruth(tmp_path, stem, groundtruth):
    """The bundled CCP subset with one annotation's ``groundtruth``
    replaced."""
    import shutil
    src = tmp_path / 'ccp'
    shutil.copytree(BUNDLED_CCP, src)
    path = src / 'annotations' / 'pixel-level' / f'{stem}.mat'
    scipy.io.savemat(str(path), {'groundtruth': groundtruth})
    return src


@pytest.mark.parametrize('bad, shown', [(np.nan, 'nan'), (2.7, '2.7')])
def test_non_integer_labels_are_named_not_cast(tmp_path, bad, shown):
    label = scipy.io.loadmat(str(BUNDLED_CCP / 'annotations' /
                                 'pixel-level' / '0001.mat'))['groundtruth']
    label = label.astype(float)
    label[3, 4] = bad
    src = _ccp_copy_with_groundtruth(tmp_path, '0001', label)
    result = _convert_cli(src, tmp_path / 'out')
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith('error: ') and '0001.mat' in message
    assert '(0001)' in message and shown in message
    assert 'not a whole number' in message
    assert not (tmp_path / 'out').exists()


def test_text_labels_are_refused(tmp_path):
    src = _ccp_copy_with_groundtruth(tmp_path, '0002',
                                     np.array(['ab', 'cd']))
    result = _convert_cli(src, tmp_path / 'out')
    assert result.returncode == 2
    assert '(0002)' in result.stderr and 'expected numbers' in result.stderr


@pytest.mark.parametrize('test_index, shown', [([2.5], '2.5'),
                                               ([2, 99], '99')])
def test_bad_fashionista_test_index_is_named(tmp_path, test_index, shown):
    raw = tmp_path / 'raw'
    raw.mkdir()
    write_fashionista_v7(raw / 'fashionista-v1.0.mat',
                         fashionista_samples(4), test_index)
    result = run_tool('convert_data.py', 'fashionista', '--src', raw,
                      '--out', tmp_path / 'out')
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith('error: ') and 'test_index' in message
    assert 'fashionista-v1.0.mat' in message and shown in message
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('damage', ['empty', 'text', 'bit-flips'])
@pytest.mark.parametrize('which', ['annotation', 'label list'])
def test_a_damaged_mat_file_is_named_in_one_line(tmp_path, damage, which):
    import shutil
    src = tmp_path / 'ccp'
    shutil.copytree(BUNDLED_CCP, src)
    path = src / 'label_list.mat' if which == 'label list' else \
        src / 'annotations' / 'pixel-level' / '0002.mat'
    data = bytearray(path.read_bytes())
    if damage == 'empty':
        data = b''
    elif damage == 'text':
        data = b'groundtruth = [1 2 3]\n'
    else:  # the compressed body altered, the header intact
        middle = len(data) // 2
        data[middle:middle + 200] = bytes(b ^ 0xFF for b in
                                          data[middle:middle + 200])
    path.write_bytes(bytes(data))
    out = tmp_path / 'out'
    result = _convert_cli(src, out)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {path}: not a readable MATLAB file'), \
        last
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]


@pytest.mark.parametrize('size', ['-5', '1', '31', 'big'])
def test_a_max_size_below_the_models_stride_is_refused(tmp_path, size):
    out = tmp_path / 'out'
    result = run_tool('convert_data.py', 'ccp', '--src', BUNDLED_CCP,
                      '--out', out, f'--max-size={size}')
    assert result.returncode == 2
    assert 'at least 32 pixels' in result.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_a_converted_dataset_is_readable_by_others(tmp_path):
    """Folders built in a private temporary place get a plain mkdir's
    mode (umask 022 here), not 0700."""
    out = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, out)
    assert out.stat().st_mode & 0o777 == file_mode() | 0o111
    assert (out / 'dataset.json').stat().st_mode & 0o777 == file_mode()


def test_a_killed_conversions_build_folder_goes_at_the_next_run(tmp_path):
    import subprocess
    import sys
    ended = subprocess.run([sys.executable, '-c', 'import os; '
                            'print(os.getpid())'], capture_output=True,
                           text=True).stdout.strip()
    left = tmp_path / f'.ccp.tmp-{ended}-abcdef'
    (left / 'img_dir').mkdir(parents=True)
    result = _convert_cli(BUNDLED_CCP, tmp_path / 'ccp')
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'removed {left}, left by an interrupted conversion' in \
        result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ccp']
