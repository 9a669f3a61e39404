"""Dense CRF post-processing (paper section 3.3) and its random search."""
import json
import re
import shutil

import cv2
import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch
from raw_formats import ccp_photos
from tool_process import run_tool

from custom_datasets.records import Sample
from custom_datasets.writer import write_dataset
from fashionseg.crf.energy import PARAM_RANGES, CRFParams
from fashionseg.crf.items import CRFInputError, load_item, split_items
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.crf.search import (apply, read_best_params, sample_params,
                                   search)
from fashionseg.errors import DataError
from fashionseg.evaluation.confusion import confusion_matrix, load_confusions
from fashionseg.evaluation.metrics import summary
from fashionseg.evaluation.score_files import save_scores

CLASSES = ('null', 'skin', 'hair', 'clothes')


def _group(label):
    """CCP's 59 labels as background, skin, hair and clothes."""
    grouped = np.full(label.shape, 3, np.uint8)
    grouped[label == 0] = 0
    grouped[label == 41] = 1
    grouped[label == 19] = 2
    return grouped


@pytest.fixture(scope='module')
def small_dataset(tmp_path_factory):
    """Real CCP photos at a quarter size, in the converted layout, with
    constructed scores: a noisy version of the truth at 1/4 resolution."""
    root = tmp_path_factory.mktemp('crf')
    samples, split_of = [], {}
    for position, (image_id, jpeg, label) in enumerate(ccp_photos(8), 1):
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        size = (image.shape[1] // 4, image.shape[0] // 4)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        label = cv2.resize(_group(label), size,
                           interpolation=cv2.INTER_NEAREST)
        stem = f'{image_id:04d}'
        samples.append(Sample(stem, position, cv2.imencode(
            '.jpg', image)[1].tobytes(), label, 'test'))
        split_of[stem] = 'val' if position <= 4 else 'test'
    data = root / 'data'
    write_dataset(samples, split_of, data, 'ccp-grouped', CLASSES)
    rng = np.random.default_rng(0)
    for strength, name in ((2.0, 'noisy'), (6.0, 'strong')):
        for split in ('val', 'test'):
            out = root / f'{name}_{split}'
            out.mkdir()
            for sample in samples:
                if split_of[sample.stem] != split:
                    continue
                h, w = sample.label.shape
                small = cv2.resize(sample.label, (-(-w // 4), -(-h // 4)),
                                   interpolation=cv2.INTER_NEAREST)
                scores = strength * np.eye(len(CLASSES))[small].transpose(
                    2, 0, 1) + rng.normal(0, 1.5, (len(CLASSES),) +
                                          small.shape)
                save_scores(out / f'{sample.stem}.npz', scores, sample.stem,
                            h, w, -(-h // 4) * 4, -(-w // 4) * 4)
    return root


def _direct_pydensecrf(image, scores, height, width, params):
    """The CRF as a plain pydensecrf call, with the unary computed here."""
    logits = torch.nn.functional.interpolate(
        torch.from_numpy(scores.astype(np.float32))[None],
        size=(-(-height // 4) * 4, -(-width // 4) * 4), mode='bilinear',
        align_corners=False)[0, :, :height, :width]
    probs = torch.softmax(logits, 0).numpy()
    crf = dcrf.DenseCRF2D(width, height, len(probs))
    crf.setUnaryEnergy(np.ascontiguousarray(
        -np.log(probs).reshape(len(probs), -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=params.theta_alpha, srgb=params.theta_beta,
                             rgbim=np.ascontiguousarray(image),
                             compat=params.w1)
    q = np.array(crf.inference(10)).reshape(len(probs), height, width)
    return q.argmax(0)


def test_crf_equals_direct_pydensecrf_call(small_dataset):
    items, _ = split_items(small_dataset / 'noisy_val',
                           small_dataset / 'data', 'val')
    for item in items[:2]:
        image, label, log_probs = load_item(item, len(CLASSES))
        record = np.load(item.scores)
        for params in (CRFParams(40, 13, 10), CRFParams(5, 60, 3)):
            ours = dense_crf(image, log_probs, params)
            direct = _direct_pydensecrf(image, record['scores'],
                                        label.shape[0], label.shape[1],
                                        params)
            np.testing.assert_array_equal(ours, direct)


def test_crf_with_strong_correct_unary_does_not_lower_accuracy(
        small_dataset):
    items, _ = split_items(small_dataset / 'strong_val',
                           small_dataset / 'data', 'val')
    loaded = [load_item(item, len(CLASSES)) for item in items]
    before = np.mean([(lp.argmax(0) == label).mean()
                      for _, label, lp in loaded])
    assert before > 0.9  # the truth, blurred by the 1/4 resolution
    for params in (CRFParams(40, 13, 10), CRFParams(20, 30, 5),
                   CRFParams(10, 10, 3)):
        after = np.mean([(dense_crf(image, lp, params) == label).mean()
                         for image, label, lp in loaded])
        assert after >= before


def test_search_is_reproducible_in_range_and_picks_the_best(small_dataset):
    first = search(small_dataset / 'noisy_val', small_dataset / 'data',
                   'val', trials=6, seed=3, workers=1)
    again = search(small_dataset / 'noisy_val', small_dataset / 'data',
                   'val', trials=6, seed=3, workers=2)
    assert first == again
    assert len(first['trials']) == 6
    for trial in first['trials']:
        for name, (low, high) in PARAM_RANGES.items():
            assert low <= trial[name] <= high
    best = max(first['trials'], key=lambda t: t['accuracy'])
    assert first['best'] == {k: best[k] for k in PARAM_RANGES}
    assert first['best_accuracy'] == best['accuracy']
    other = search(small_dataset / 'noisy_val', small_dataset / 'data',
                   'val', trials=6, seed=4, workers=1)
    assert other['trials'] != first['trials']


def test_sampling_covers_the_paper_ranges_uniformly():
    drawn = sample_params(3000, seed=0)
    assert sample_params(50, seed=0) == drawn[:50]
    for name, (low, high) in PARAM_RANGES.items():
        values = np.array([getattr(p, name) for p in drawn])
        assert values.min() == low and values.max() == high
        assert abs(values.mean() - (low + high) / 2) < 0.05 * (high - low)


def test_parallel_and_serial_apply_agree(small_dataset, tmp_path):
    params = CRFParams(30, 20, 5)
    serial = apply(small_dataset / 'noisy_test', small_dataset / 'data',
                   'test', params, tmp_path / 'serial', workers=1)
    parallel = apply(small_dataset / 'noisy_test', small_dataset / 'data',
                     'test', params, tmp_path / 'parallel', workers=2)
    assert serial == {**parallel, 'scores': serial['scores']}
    for path in sorted((tmp_path / 'serial').glob('*.png')):
        assert path.read_bytes() == (tmp_path / 'parallel' /
                                     path.name).read_bytes()
    assert set(serial) >= {'aAcc', 'mIoU', 'mAcc', 'per_class', 'crf'}
    assert len(list((tmp_path / 'serial').glob('*.png'))) == 4


def test_cli_search_then_apply(small_dataset, tmp_path):
    result = run_tool(
        'crf.py', 'search', '--scores', small_dataset / 'noisy_val',
        '--data', small_dataset / 'data', '--split', 'val', '--trials', 3,
        '--seed', 0, '--out', tmp_path / 'search.json', timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    searched = json.loads((tmp_path / 'search.json').read_text())
    assert len(searched['trials']) == 3
    result = run_tool(
        'crf.py', 'apply', '--scores', small_dataset / 'noisy_test',
        '--data', small_dataset / 'data', '--split', 'test', '--params',
        tmp_path / 'search.json', '--out', tmp_path / 'refined',
        '--metrics', tmp_path / 'crf.json', timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / 'crf.json').read_text())
    assert metrics['crf'] == searched['best']
    # The per-image confusion matrices of the refined labels, beside the
    # metrics, agree with them.
    per_image = load_confusions(tmp_path / 'crf.confusion.npz')
    stems = (small_dataset / 'data' / 'splits' / 'test.txt').read_text()
    assert per_image['stems'] == stems.split()
    total = per_image['matrices'].sum(0)
    assert summary(total)['aAcc'] == pytest.approx(metrics['aAcc'], abs=0.01)
    assert summary(total)['mIoU'] == pytest.approx(metrics['mIoU'], abs=0.01)
    for stem, matrix in zip(per_image['stems'], per_image['matrices']):
        label = cv2.imread(str(small_dataset / 'data' / 'ann_dir' / 'test' /
                               f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        refined = cv2.imread(str(tmp_path / 'refined' / f'{stem}.png'),
                             cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(
            matrix, confusion_matrix(label, refined, matrix.shape[0]))


def test_result_files_replace_only_their_own_and_never_an_input(
        small_dataset, tmp_path):
    """``search --out`` and ``apply --metrics`` are refused, before any
    work and leaving every file as it was, on a user's file, on a folder,
    on a score file or the dataset's own ``dataset.json``; a rerun
    replaces its own result."""
    data = tmp_path / 'data'
    shutil.copytree(small_dataset / 'data', data)
    scores = _copy_scores(small_dataset / 'noisy_val', tmp_path / 'scores')
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    score_file = sorted(scores.glob('*.npz'))[0]
    folder = tmp_path / 'folder'
    folder.mkdir()
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}

    def search(out):
        return run_tool('crf.py', 'search', '--scores', scores, '--data',
                        data, '--trials', 1, '--out', out, timeout=300)

    for out, why in ((notes, 'exists and is not a result tools/crf.py '
                      'search wrote'), (folder, 'is a folder'),
                     (score_file, 'lies within the input'),
                     (data / 'dataset.json', 'lies within the input'),
                     (notes / 'search.json', 'is a file, not a folder')):
        result = search(out)
        assert result.returncode == 2, (out, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('error: --out') and why in last, last
        assert 'baseline' not in result.stderr  # no work was done
    assert search(tmp_path / 'search.json').returncode == 0
    rerun = search(tmp_path / 'search.json')
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    def apply_with(metrics):
        return run_tool('crf.py', 'apply', '--scores', scores, '--data',
                        data, '--split', 'val', '--params',
                        tmp_path / 'search.json', '--out', tmp_path / 'out',
                        '--metrics', metrics, timeout=300)

    for metrics in (notes, data / 'dataset.json', tmp_path / 'search.json'):
        result = apply_with(metrics)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith(
            'error: --metrics')
        assert not (tmp_path / 'out').exists()
    # A confusion file of someone else's where it would go, beside a new
    # metrics file.
    (tmp_path / 'new.confusion.npz').write_bytes(b'mine too')
    result = apply_with(tmp_path / 'new.json')
    assert result.returncode == 2
    assert 'new.confusion.npz, which tools/crf.py apply writes beside it' \
        in result.stderr
    assert apply_with(tmp_path / 'crf.json').returncode == 0
    # A user's note in the tool's own folder is none of its results: a
    # rerun leaves it; metrics named as one of the label maps are refused.
    (tmp_path / 'out' / 'notes.txt').write_text('mine')
    assert apply_with(tmp_path / 'crf.json').returncode == 0
    assert (tmp_path / 'out' / 'notes.txt').read_text() == 'mine'
    label_map = tmp_path / 'out' / f'{score_file.stem}.png'
    kept = label_map.read_bytes()
    result = apply_with(label_map)
    assert result.returncode == 2
    assert "a label map's name in --out" in result.stderr
    assert label_map.read_bytes() == kept
    after = {p: p.read_bytes() for p in before}
    assert after == before


# Bad input: a clear error naming the file, never a skipped image.

def _copy_scores(src, dst):
    dst.mkdir()
    for path in src.glob('*.npz'):
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


@pytest.mark.parametrize('change, problem', [
    (dict(scores=np.full((4, 5, 6), np.nan, np.float16)), 'not finite'),
    (dict(scores=np.full((4, 5, 6), np.inf, np.float32)), 'not finite'),
    (dict(scores=np.zeros(3, np.float16)), 'not classes x h x w'),
    (dict(scores=np.zeros((4, 0, 6), np.float16)), 'not classes x h x w'),
    (dict(scores=np.zeros((4, 5, 6), np.int64)), 'not floating point'),
    (dict(input_height=np.int32(60000)), 'a network input of 60000'),
    (dict(height=np.int32(0)), 'an image of 0 x'),
])
def test_a_score_file_of_impossible_values_is_named(small_dataset, tmp_path,
                                                    change, problem):
    """Scores that no model writes (NaN, of no size, a network input far
    larger than its score map) are refused with the file named, not
    refined into labels or a crash."""
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    bad = sorted(scores.glob('*.npz'))[1]
    record = dict(np.load(bad))
    record.update(change)
    np.savez(bad, **record)
    with pytest.raises(DataError, match=f'{re.escape(str(bad))}: not a '
                       f'score file .*{problem}'):
        apply(scores, small_dataset / 'data', 'test', CRFParams(5, 5, 5),
              tmp_path / 'out', workers=1)
    assert not (tmp_path / 'out' / 'metrics.json').exists()


def test_class_count_mismatch(small_dataset, tmp_path):
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    bad = sorted(scores.glob('*.npz'))[1]
    record = dict(np.load(bad))
    save_scores(bad, record['scores'][:3], str(record['stem']),
                int(record['height']), int(record['width']))
    with pytest.raises(CRFInputError, match=rf'{bad}.*3 classes.*4'):
        apply(scores, small_dataset / 'data', 'test', CRFParams(5, 5, 5),
              tmp_path / 'out', workers=1)


def test_apply_into_a_folder_still_being_written_stops_at_once(
        small_dataset, tmp_path):
    from fashionseg.utils.output_folder import (OutputFolderError,
                                                locked_output_folder)
    out = tmp_path / 'out'
    with locked_output_folder(out, 'tools/crf.py apply'):
        temporary = out / '.0001.tmp-first.png'
        temporary.write_bytes(b'being written')
        with pytest.raises(OutputFolderError,
                           match='being written by another run'):
            apply(small_dataset / 'noisy_test', small_dataset / 'data',
                  'test', CRFParams(5, 5, 5), out, workers=1)
        assert sorted(out.iterdir()) == [temporary]


@pytest.mark.parametrize('damage', ['cut', 'empty', 'text', 'fields'])
def test_a_damaged_score_file_is_named_in_one_line(small_dataset, tmp_path,
                                                  damage):
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    bad = sorted(scores.glob('*.npz'))[1]
    whole = bad.read_bytes()
    if damage == 'fields':
        np.savez(bad, other=np.zeros(3))
    else:
        bad.write_bytes(dict(cut=whole[:len(whole) // 2], empty=b'',
                             text=b'not scores')[damage])
    result = run_tool('crf.py', 'apply', '--scores', scores, '--data',
                      small_dataset / 'data', '--params',
                      _params_file(tmp_path), '--out', tmp_path / 'out',
                      '--workers', 2, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {bad}: not a whole score file'), last


def test_a_damaged_dataset_json_is_named_in_one_line(small_dataset,
                                                    tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(small_dataset / 'data', data)
    for text in ('{"name": ', '{"name": "x"}'):
        (data / 'dataset.json').write_text(text)
        result = run_tool('crf.py', 'search', '--scores',
                          small_dataset / 'noisy_val', '--data', data,
                          '--trials', 1, '--out', tmp_path / 's.json')
        assert result.returncode == 2, result.stderr[-2000:]
        assert 'Traceback' not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(
            f'error: {data / "dataset.json"}: ')


def test_score_file_without_image(small_dataset, tmp_path):
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    (scores / '9999.npz').write_bytes(
        next(scores.glob('*.npz')).read_bytes())
    with pytest.raises(CRFInputError, match=r'9999.npz: score file without'):
        split_items(scores, small_dataset / 'data', 'test')


def test_image_without_scores(small_dataset, tmp_path):
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    missing = sorted(scores.glob('*.npz'))[0]
    missing.unlink()
    with pytest.raises(CRFInputError, match=rf'{missing}: no scores'):
        split_items(scores, small_dataset / 'data', 'test')


def test_sizes_that_disagree(small_dataset, tmp_path):
    scores = _copy_scores(small_dataset / 'noisy_test', tmp_path / 's')
    bad = sorted(scores.glob('*.npz'))[2]
    record = dict(np.load(bad))
    save_scores(bad, record['scores'], str(record['stem']),
                int(record['height']) + 4, int(record['width']))
    with pytest.raises(CRFInputError, match=rf'{bad}: scores are for a'):
        apply(scores, small_dataset / 'data', 'test', CRFParams(5, 5, 5),
              tmp_path / 'out', workers=1)


@pytest.mark.parametrize('values', [
    dict(theta_alpha=0, theta_beta=10, w1=3),
    dict(theta_alpha=41, theta_beta=10, w1=3),
    dict(theta_alpha=10, theta_beta=101, w1=3),
    dict(theta_alpha=10, theta_beta=10, w1=16),
])
def test_out_of_range_parameters(values, tmp_path):
    with pytest.raises(ValueError, match='outside the integers'):
        CRFParams(**values)
    path = tmp_path / 'params.json'
    path.write_text(json.dumps({'best': values}))
    with pytest.raises(CRFInputError, match=str(path)):
        read_best_params(path)


@pytest.mark.parametrize('value', ['13', 2.5, True, None])
def test_parameters_of_the_wrong_type_are_named_so(value, tmp_path):
    """theta_beta "13" (a string) is the wrong type, not out of range."""
    with pytest.raises(ValueError, match=r'theta_beta=.* must be an integer'
                       r' \(1\.\.100\), not ' + type(value).__name__):
        CRFParams(theta_alpha=10, theta_beta=value, w1=3)
    path = tmp_path / 'params.json'
    path.write_text(json.dumps(
        {'best': dict(theta_alpha=10, theta_beta=value, w1=3)}))
    with pytest.raises(CRFInputError, match='must be an integer'):
        read_best_params(path)


def test_a_misspelt_parameter_is_named(tmp_path):
    """A hand-written parameter file's misspelt key would otherwise be
    left out unseen (its right spelling is then missing, or twice)."""
    path = tmp_path / 'params.json'
    path.write_text(json.dumps({'best': dict(
        theta_alpha=10, theta_beta=5, w1=3, theta_alfa=4)}))
    with pytest.raises(CRFInputError, match=f'{path}: "best" holds '
                       "'theta_alfa', not a parameter of the CRF"):
        read_best_params(path)


def _params_file(folder):
    path = folder / 'params.json'
    path.write_text(json.dumps(
        {'best': {'theta_alpha': 40, 'theta_beta': 13, 'w1': 10}}))
    return path


def test_scores_beyond_float16_are_kept_finite_through_the_crf(
        small_dataset, tmp_path):
    """A score above 65504 would be inf in float16 and NaN in the CRF: the
    file keeps it in float32, and the refined labels follow the scores."""
    import shutil

    from fashionseg.evaluation.score_files import load_scores, save_scores
    data = (small_dataset / 'data')
    scores_dir = tmp_path / 'scores'
    shutil.copytree(small_dataset / 'noisy_test', scores_dir)
    first = sorted(scores_dir.glob('*.npz'))[0]
    record = load_scores(first)
    huge = record['scores'].astype(np.float32) * 1e5
    save_scores(first, huge, record['stem'], record['height'],
                record['width'], record['input_height'],
                record['input_width'])
    assert load_scores(first)['scores'].dtype == np.float32
    assert np.isfinite(load_scores(first)['scores']).all()
    result = run_tool(
        'crf.py', 'apply', '--scores', scores_dir, '--data', data,
        '--split', 'test', '--out', tmp_path / 'crf', '--params',
        _params_file(tmp_path), '--backend', 'pydensecrf', '--workers', 1)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / 'crf' / 'metrics.json').read_text())
    assert metrics['aAcc'] is not None and metrics['aAcc'] > 50
    with pytest.raises(ValueError, match='NaN or infinite'):
        save_scores(tmp_path / 'nan.npz', np.full((2, 2, 2), np.nan), 'x',
                    8, 8)


def test_the_crf_refuses_more_classes_than_a_label_png_holds(
        small_dataset, tmp_path):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree((small_dataset / 'data'), data)
    meta = json.loads((data / 'dataset.json').read_text())
    meta['classes'] = [f'c{i}' for i in range(300)]
    (data / 'dataset.json').write_text(json.dumps(meta))
    result = run_tool(
        'crf.py', 'apply', '--scores', small_dataset / 'noisy_test',
        '--data', data, '--split', 'test', '--out', tmp_path / 'crf',
        '--params', _params_file(tmp_path))
    assert result.returncode == 2
    assert '300 classes' in result.stderr and 'at most 255' in \
        result.stderr
    assert not (tmp_path / 'crf').exists()


def test_an_out_that_is_a_file_or_missing_scores_name_the_option(
        small_dataset, tmp_path):
    from fashionseg.utils.output_folder import OutputFolderError
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    with pytest.raises(OutputFolderError, match=f'--out {afile} is a file'):
        apply(small_dataset / 'noisy_test', small_dataset / 'data', 'test',
              CRFParams(5, 5, 5), afile, workers=1)
    with pytest.raises(CRFInputError, match=f'--scores {tmp_path / "none"}: '
                       'no such folder'):
        split_items(tmp_path / 'none', small_dataset / 'data', 'test')
    assert afile.read_text() == 'mine'
