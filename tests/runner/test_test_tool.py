"""tools/test.py: metrics JSON and the score files for the CRF stage."""
import json

import cv2
import numpy as np
import pytest
import torch
from conftest import file_mode
from mmengine.registry import init_default_scope
from tool_process import run_tool
from training_helpers import (CONFIG_DIR, build_converted_datasets,
                              small_run_options)

from fashionseg.evaluation.confusion import load_confusions
from fashionseg.evaluation.iou_metric import ClassIoUMetric
from fashionseg.evaluation.metrics import summary
from fashionseg.evaluation.score_files import load_scores
from fashionseg.runner.testing import configure_testing, run_test
from fashionseg.runner.training import configure_training, train


def _sample(pred, gt, stem='a'):
    return {'pred_sem_seg': {'data': torch.tensor(pred)[None]},
            'gt_sem_seg': {'data': torch.tensor(gt)[None]},
            'img_path': f'img_dir/test/{stem}.jpg'}


def test_class_iou_metric_matches_hand_count():
    init_default_scope('mmseg')
    metric = ClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('bg', 'shirt', 'hat'))
    # Image 1: 6 pixels, 5 right. Image 2: 4 pixels, 2 right.
    metric.process({}, [_sample([[0, 0, 1], [1, 1, 0]],
                                [[0, 0, 1], [1, 1, 1]], 'one')])
    metric.process({}, [_sample([[0, 1], [1, 1]], [[0, 0], [0, 1]], 'two')])
    result = metric.compute_metrics(metric.results)
    # Totals: bg  TP 3, pred 4, gt 5 -> IoU 3/6; shirt TP 4, pred 6, gt 5
    # -> IoU 4/7; hat: no pixels anywhere -> NaN, left out of the mean.
    assert result['aAcc'] == pytest.approx(70.0)
    assert result['IoU.bg'] == pytest.approx(50.0)
    assert result['IoU.shirt'] == pytest.approx(57.14)
    assert np.isnan(result['IoU.hat'])
    assert result['mIoU'] == pytest.approx(53.57)
    assert result['Acc.bg'] == pytest.approx(60.0)
    assert result['Acc.shirt'] == pytest.approx(80.0)
    # The per-image confusion matrices (rows: ground truth) the report uses.
    assert [stem for stem, _ in metric.per_image] == ['one', 'two']
    np.testing.assert_array_equal(metric.per_image[0][1],
                                  [[2, 0, 0], [1, 3, 0], [0, 0, 0]])
    np.testing.assert_array_equal(metric.per_image[1][1],
                                  [[1, 2, 0], [0, 1, 0], [0, 0, 0]])
    total = metric.per_image[0][1] + metric.per_image[1][1]
    assert summary(total)['aAcc'] == pytest.approx(70.0)
    assert summary(total)['mIoU'] == pytest.approx(result['mIoU'], abs=0.01)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('trained')
    ccp = build_converted_datasets(root / 'data')['ccp']
    config = str(CONFIG_DIR / 'semfpn_x101_ccp.py')
    cfg = configure_training(
        config, work_dir=str(root / 'work'), pretrained=False,
        cfg_options=small_run_options('semfpn_x101', ccp))
    train(cfg, config)
    return config, root / 'work' / 'epoch_1.pth', ccp


def test_metrics_and_scores(trained, tmp_path):
    config, checkpoint, data_root = trained
    options = small_run_options('semfpn_x101', data_root)
    out = tmp_path / 'scores'
    cfg = configure_testing(config, str(checkpoint), str(tmp_path / 'work'),
                            str(out), options)
    record = run_test(cfg, config, str(checkpoint))
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['aAcc'] == record['aAcc']
    assert len(saved['per_class']) == 59

    # A hand count over the model's own predictions on the test split.
    from mmseg.apis import inference_model, init_model
    model = init_model(cfg, str(checkpoint), device='cpu')
    stems = (data_root / 'splits' / 'test.txt').read_text().split()
    confusion = np.zeros((59, 59), np.int64)
    for stem in stems:
        result = inference_model(
            model, str(data_root / 'img_dir' / 'test' / f'{stem}.jpg'))
        pred = result.pred_sem_seg.data[0].numpy()
        gt = cv2.imread(str(data_root / 'ann_dir' / 'test' / f'{stem}.png'),
                        cv2.IMREAD_UNCHANGED)
        confusion += np.bincount(gt.ravel().astype(np.int64) * 59 +
                                 pred.ravel(), minlength=59 * 59
                                 ).reshape(59, 59)

        scores = load_scores(out / f'{stem}.npz')
        assert scores['stem'] == stem
        assert (scores['height'], scores['width']) == gt.shape
        assert scores['scores'].dtype == np.float16
        assert scores['scores'].shape[0] == 59
        # Testing pads as training does: the input the scores cover is the
        # image padded to a multiple of 32 (at the bottom and right).
        assert scores['input_height'] % 32 == 0
        assert scores['input_width'] % 32 == 0
        assert 0 <= scores['input_height'] - gt.shape[0] < 32
        assert 0 <= scores['input_width'] - gt.shape[1] < 32
        # The head's output before upsampling: a quarter of the input size.
        assert scores['scores'].shape[1:] == (
            -(-scores['input_height'] // 4), -(-scores['input_width'] // 4))
        upsampled = torch.nn.functional.interpolate(
            torch.from_numpy(scores['scores'].astype(np.float32))[None],
            size=(scores['input_height'], scores['input_width']),
            mode='bilinear', align_corners=False)[0].argmax(0).numpy()
        agreement = (upsampled[:gt.shape[0], :gt.shape[1]] == pred).mean()
        assert agreement > 0.98

    total = confusion.sum()
    assert saved['aAcc'] == pytest.approx(
        100 * np.trace(confusion) / total, abs=0.01)
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = tp / union
    assert saved['mIoU'] == pytest.approx(100 * np.nanmean(iou), abs=0.01)
    assert saved['per_class']['null']['IoU'] == pytest.approx(
        100 * iou[0], abs=0.01)
    # The per-image confusion matrices beside metrics.json add up to the
    # same hand count, image by image in split order.
    per_image = load_confusions(out / 'metrics.confusion.npz')
    assert per_image['stems'] == stems
    assert len(per_image['classes']) == 59
    np.testing.assert_array_equal(per_image['matrices'].sum(0), confusion)


def test_test_cli(trained, tmp_path):
    config, checkpoint, data_root = trained
    options = small_run_options('semfpn_x101', data_root)
    args = [f'{k}={json.dumps(v).replace(" ", "")}'
            if isinstance(v, list) else f'{k}={v}'
            for k, v in options.items()]

    def run(*extra):
        return run_tool('test.py', config, checkpoint, '--work-dir',
                        tmp_path / 'work', *extra, '--cfg-options', *args)

    # Both splits in one process, as the pipeline's test stage runs it.
    result = run('--split', 'val', 'test', '--out',
                 str(tmp_path / 'scores_{split}'), '--metrics',
                 str(tmp_path / 'runs' / '{split}.json'))
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ('val', 'test'):
        metrics = json.loads((tmp_path / 'runs' / f'{split}.json').read_text())
        assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc', 'per_class'}
        stems = (data_root / 'splits' / f'{split}.txt').read_text().split()
        assert sorted(p.stem for p in (tmp_path / f'scores_{split}').glob(
            '*.npz')) == sorted(stems)
        per_image = load_confusions(tmp_path / 'runs' /
                                    f'{split}.confusion.npz')
        assert per_image['stems'] == stems
        assert summary(per_image['matrices'].sum(0))['aAcc'] == \
            pytest.approx(metrics['aAcc'], abs=0.01)
    # Several splits need {split} in the paths, or they would overwrite
    # each other.
    result = run('--split', 'val', 'test', '--out', str(tmp_path / 'one'))
    assert result.returncode != 0
    assert '{split}' in result.stderr
    for template in ('o_{foo}', 'o_{'):
        result = run('--out', str(tmp_path / template))
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].endswith(
            'the only name in braces it may hold is {split}')
    # The metrics never land on the checkpoint, the dataset or a file of
    # someone else's, and are refused before the test runs.
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    weights = checkpoint.read_bytes()
    for metrics, why in ((checkpoint, 'lies within the input'),
                         (data_root / 'dataset.json', 'lies within the input'),
                         (notes, 'is not a result tools/test.py wrote'),
                         (tmp_path / 'runs', 'is a folder')):
        result = run('--split', 'val', '--metrics', str(metrics))
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('error: --metrics') and why in last, last
    assert checkpoint.read_bytes() == weights
    assert notes.read_text() == 'mine'
    # With several splits, every split's metrics are checked before the
    # first split runs; a confusion file of the tool's own whose metrics
    # are gone is replaced.
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    (mixed / 'test.json').write_text('mine')
    result = run('--split', 'val', 'test', '--metrics',
                 str(mixed / '{split}.json'))
    assert result.returncode == 2
    assert f'--metrics {mixed / "test.json"} exists' in result.stderr
    assert sorted(p.name for p in mixed.iterdir()) == ['test.json']
    (mixed / 'test.json').unlink()
    (tmp_path / 'runs' / 'val.json').unlink()  # its confusions stay
    result = run('--split', 'val', '--metrics', str(tmp_path / 'runs' /
                                                   'val.json'))
    assert result.returncode == 0, result.stderr[-2000:]
    # A later split's --out holding someone else's files is refused before
    # the first split runs; so are metrics named as an output folder, and
    # scores in the work dir itself.
    theirs = tmp_path / 'l_test'
    theirs.mkdir()
    (theirs / 'keep.txt').write_text('mine')
    result = run('--split', 'val', 'test', '--out',
                 str(tmp_path / 'l_{split}'), '--metrics',
                 str(tmp_path / 'l{split}.json'))
    assert result.returncode == 2
    assert 'l_test holds files tools/test.py did not write' in \
        result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / 'l_val').exists()
    assert not (tmp_path / 'lval.json').exists()
    for paths, why in ((['--out', str(tmp_path / 'same'), '--metrics',
                         str(tmp_path / 'same')], 'is the --out folder'),
                       (['--out', str(tmp_path / 'work')],
                        'is the work dir')):
        result = run('--split', 'val', *paths)
        assert result.returncode == 2
        assert why in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / 'same').exists()
    # crf.py apply's metrics are not test.py's to replace.
    crf = tmp_path / 'crf.json'
    crf.write_text(json.dumps(dict(aAcc=1, mIoU=1, per_class={}, crf={})))
    result = run('--split', 'val', '--metrics', str(crf))
    assert result.returncode == 2 and 'is not a result tools/test.py ' \
        'wrote' in result.stderr
    assert json.loads((data_root / 'dataset.json').read_text())['classes']


def test_a_reused_score_folder_keeps_only_this_runs_files(trained,
                                                          tmp_path):
    """A smaller run into the folder of a larger one leaves only its own
    score files (readable by others: the umask's mode); a folder of
    someone else's files is refused before any work."""
    config, checkpoint, data_root = trained
    options = small_run_options('semfpn_x101', data_root)
    args = [f'{k}={json.dumps(v).replace(" ", "")}'
            if isinstance(v, list) else f'{k}={v}'
            for k, v in options.items()]
    scores = tmp_path / 'scores'

    def run(*extra):
        return run_tool('test.py', config, checkpoint, '--work-dir',
                        tmp_path / 'work', '--split', 'test', *extra,
                        '--cfg-options', *args)

    stems = (data_root / 'splits' / 'test.txt').read_text().split()
    assert len(stems) > 1
    assert run('--out', str(scores)).returncode == 0
    assert len(list(scores.glob('*.npz'))) == len(stems) + 1  # confusions
    # A user's note in the folder is none of the tool's results: it stays.
    (scores / 'notes.txt').write_text('mine')
    result = run('--out', str(scores), '--max-images', '1')
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in scores.iterdir()) == sorted(
        [f'{stems[0]}.npz', 'metrics.json', 'metrics.confusion.npz',
         '.written-by', 'notes.txt'])
    (scores / 'notes.txt').unlink()
    assert json.loads((scores / 'metrics.json').read_text())[
        'max_images'] == 1
    assert all(p.stat().st_mode & 0o777 == file_mode()
               for p in scores.iterdir())
    # The metrics elsewhere: the folder's own earlier metrics go too.
    result = run('--out', str(scores), '--max-images', '1', '--metrics',
                 str(tmp_path / 'elsewhere.json'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in scores.iterdir()) == [
        '.written-by', f'{stems[0]}.npz']
    # A second run into a folder still being written stops at once, and
    # leaves the first run's temporaries alone.
    from fashionseg.utils.output_folder import locked_output_folder
    temporary = scores / f'.{stems[0]}.tmp-first.npz'
    with locked_output_folder(scores, 'tools/test.py'):
        temporary.write_bytes(b'being written')
        result = run('--out', str(scores))
    assert result.returncode == 2
    assert 'is being written by another run of tools/test.py' in \
        result.stderr.strip().splitlines()[-1]
    assert temporary.read_bytes() == b'being written'
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    (theirs / 'notes.txt').write_text('mine')
    result = run('--out', str(theirs))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'notes.txt' in last
    assert (theirs / 'notes.txt').read_text() == 'mine'
