"""The report: figures recomputed from hand-made per-image confusion
matrices, rendered beside the paper's."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from custom_datasets.cfpd import CFPD_CLASSES
from fashionseg.errors import DataError
from fashionseg.evaluation.confusion import save_confusions
from fashionseg.evaluation.metrics import (background_accuracy, class_iou,
                                           foreground_iou, mean_image_iou,
                                           mean_iou, pixel_accuracy)
from fashionseg.report.labels import NOT_REPORTED, NOT_RUN
from fashionseg.report.paper import load_paper_figures, load_section
from fashionseg.report.render import build_report, write_report


def test_metrics_from_a_hand_made_confusion_matrix():
    # rows: ground truth, columns: prediction; 3 classes, class 0 is
    # background.
    confusion = np.array([[50, 5, 5],
                          [10, 20, 0],
                          [0, 10, 0]])
    assert pixel_accuracy(confusion) == pytest.approx(100 * 70 / 100)
    # IoU: bg 50/(60+60-50)=50/70, c1 20/(30+35-20)=20/45, c2 0/(10+5)=0.
    np.testing.assert_allclose(class_iou(confusion), [50 / 70, 20 / 45, 0])
    assert mean_iou(confusion) == pytest.approx(
        100 * (50 / 70 + 20 / 45 + 0) / 3)
    # Tangseng et al.: foreground only, summed I over summed U.
    assert foreground_iou(confusion) == pytest.approx(100 * 20 / (45 + 15))
    assert background_accuracy(confusion) == pytest.approx(60.0)
    # A class in neither ground truth nor prediction is left out of mIoU.
    padded = np.zeros((4, 4), np.int64)
    padded[:3, :3] = confusion
    assert np.isnan(class_iou(padded)[3])
    assert mean_iou(padded) == pytest.approx(mean_iou(confusion))


def _write_run(runs, dataset, model, seed, stage, matrices, classes):
    folder = runs / dataset / model / f'seed{seed}'
    stems = [f'{i:04d}' for i in range(len(matrices))]
    save_confusions(folder / f'{stage}.confusion.npz', stems, matrices,
                    classes)


def _confusion(correct_bg, correct_fg, wrong, num_classes):
    """An image: background and class 1 pixels, ``wrong`` class-1 pixels
    predicted as class 2."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    matrix[0, 0] = correct_bg
    matrix[1, 1] = correct_fg
    matrix[1, 2] = wrong
    return matrix


@pytest.fixture
def results(tmp_path):
    """CFPD runs of the FPN (two seeds) and FCN (one seed, no CRF yet);
    Fashionista not run."""
    classes = list(CFPD_CLASSES)
    runs = tmp_path / 'results' / 'runs'
    n = len(classes)
    fpn = {
        (0, 'test'): [_confusion(80, 15, 5, n), _confusion(80, 10, 10, n)],
        (0, 'crf'): [_confusion(80, 18, 2, n), _confusion(80, 14, 6, n)],
        (1, 'test'): [_confusion(80, 16, 4, n), _confusion(80, 12, 8, n)],
        (1, 'crf'): [_confusion(80, 19, 1, n), _confusion(80, 15, 5, n)],
    }
    for (seed, stage), matrices in fpn.items():
        _write_run(runs, 'cfpd', 'fpn_x101', seed, stage, matrices, classes)
    _write_run(runs, 'cfpd', 'fcn_r101', 0, 'test',
               [_confusion(80, 5, 15, n), _confusion(80, 5, 15, n)], classes)
    params = dict(datasets=['fashionista', 'cfpd'],
                  models=['fpn_x101', 'fcn_r101'], seeds=[0, 1])
    return tmp_path / 'results', params, fpn


def test_report_renders_measured_and_paper_figures(results):
    out, params, fpn = results
    report = build_report(out, params, load_paper_figures())
    write_report(report, out)
    text = (out / 'tables.md').read_text()

    # FPN without CRF: per seed, accuracy over both images.
    acc = [pixel_accuracy(sum(fpn[(s, 'test')])) for s in (0, 1)]
    fg = [foreground_iou(sum(fpn[(s, 'test')])) for s in (0, 1)]
    # The main IoU: Tangseng et al.'s, per image, then the mean.
    img = [mean_image_iou(np.stack(fpn[(s, 'test')])) for s in (0, 1)]
    assert acc == [pytest.approx(185 / 200 * 100), pytest.approx(188 / 2)]
    cell = f'{np.mean(acc):.2f} ± {np.std(acc, ddof=1):.2f}'
    table1 = text.split('## Table 1')[1].split('## Table 2')[0]
    fpn_row = next(line for line in table1.splitlines()
                   if line.startswith('| FPN (ResNeXt-101), the paper'))
    assert cell in fpn_row
    assert f'{np.mean(fg):.2f} ± {np.std(fg, ddof=1):.2f}' in fpn_row
    assert f'{np.mean(img):.2f} ± {np.std(img, ddof=1):.2f}' in fpn_row
    assert fpn_row.index(f'{np.mean(img):.2f} ±') < fpn_row.index(
        f'{np.mean(fg):.2f} ±')
    # Fashionista has not been run: its measured cells say so.
    assert fpn_row.count(NOT_RUN) == 4
    # The paper's figures, and the measured FPN's difference from them.
    assert '93.26' in table1 and '93.52' in table1 and '91.50' in table1
    diff_row = next(line for line in table1.splitlines()
                    if 'difference' in line)
    assert f'{np.mean(acc) - 93.52:+.2f}' in diff_row
    assert f'{np.mean(img) - 53.00:+.2f}' in diff_row
    # FCN has test results but no CRF results yet.
    table2 = text.split('## Table 2')[1].split('## Throughput')[0]
    fcn_row = next(line for line in table2.splitlines()
                   if line.startswith('| FCN'))
    assert fcn_row.count(NOT_RUN) == 8
    fcn_row1 = next(line for line in table1.splitlines()
                    if line.startswith('| FCN'))
    assert f'{pixel_accuracy(2 * _confusion(80, 5, 15, 23)):.2f}' in fcn_row1
    # Background only, measured from the test ground truth: 160 of 200.
    assert '80.00' in table1

    # The same figures in CSV and JSON, one record per figure and seed.
    records = pd.read_csv(out / 'tables.csv')
    mine = records[(records.source == 'measured') &
                   (records.method == 'fpn_x101') &
                   (records.table == 'without_crf') &
                   (records.metric == 'aAcc')].sort_values('seed')
    np.testing.assert_allclose(mine.value, acc)
    data = json.loads((out / 'tables.json').read_text())
    assert data['main_iou'] == 'imgIoU'
    assert any(r['source'] == 'paper' and r['value'] == 93.62
               for r in data['records'])
    per_class = pd.DataFrame(data['per_class'])
    shirt = per_class[(per_class.cls == 'T-shirt') &
                      (per_class.method == 'fpn_x101') &
                      (per_class.table == 'without_crf') &
                      (per_class.seed == 0)]
    assert shirt.IoU.iloc[0] == pytest.approx(
        100 * class_iou(sum(fpn[(0, 'test')]))[1])


def test_paper_figures_live_in_one_data_file():
    paper = load_paper_figures()
    assert paper['tables']['without_crf']['fpn']['cfpd'] == \
        {'acc': 93.52, 'iou': 53.00}
    assert paper['tables']['with_crf']['oe']['fashionista']['iou'] == 51.78
    assert paper['background_only'] == {'fashionista': 77.58, 'cfpd': 79.41}
    assert paper['throughput']['with_crf'] == 0.20


def test_load_section_reads_the_demo_and_the_paper(tmp_path):
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(dict(
        datasets=['cfpd'], models=['fpn_x101'], seeds=[0],
        demo=dict(datasets=['ccp'], models=['fcn_r101'], seeds=[0, 1]))))
    assert load_section(path)['datasets'] == ['cfpd']
    assert load_section(path, 'demo')['seeds'] == [0, 1]
    with pytest.raises(KeyError, match='no section'):
        load_section(path, 'nope')
    # A damaged or empty file is named, not a parser's traceback.
    for text, why in (('datasets: [cfpd\n', 'not YAML'),
                      ('', 'no keys at its top level'),
                      ('- a list\n', 'no keys at its top level')):
        path.write_text(text)
        with pytest.raises(KeyError, match=f'{path}: .*{re.escape(why)}'):
            load_section(path)


def test_report_has_the_claims_section(results):
    out, params, fpn = results
    report = build_report(out, params, load_paper_figures())
    write_report(report, out)
    text = (out / 'tables.md').read_text()
    section = text.split("## Do our runs support the paper's claims?")[1]
    section = section.split('\n## ')[0]
    line = next(row for row in section.splitlines()
                if 'FPN beats FCN, both without CRF' in row and 'CFPD' in row)
    # FPN is right on 25 of 40 class-1 pixels and FCN on 10: a difference
    # the bootstrap cannot miss, over the one seed both have.
    acc = np.mean([pixel_accuracy(sum(fpn[(0, 'test')]))]) - \
        pixel_accuracy(2 * _confusion(80, 5, 15, 23))
    assert f'{acc:+.2f} [' in line
    assert line.count('yes') == 2
    assert line.rstrip(' |').endswith('0')  # seeds: 0
    # FCN has no CRF run yet; Fashionista has no runs at all.
    crf_line = next(row for row in section.splitlines()
                    if 'FPN without CRF beats FCN with CRF' in row and
                    'CFPD' in row)
    assert NOT_RUN in crf_line
    assert all(NOT_RUN in row for row in section.splitlines()
               if 'Fashionista' in row)
    data = json.loads((out / 'tables.json').read_text())
    claim = next(c for c in data['claims']
                 if c['claim'] == 'the CRF improves FPN' and
                 c['dataset'] == 'cfpd')
    assert claim['seeds'] == [0, 1]
    assert claim['figures']['aAcc']['low'] > 0


def test_the_report_replaces_only_an_earlier_reports_files(tmp_path):
    """tables.md, .csv, .json and metrics.json in --out are an earlier
    report's to replace (its tables.json, written first, says so), never
    another tool's metrics.json or a user's notes."""
    from fashionseg.report.render import check_report_out
    from fashionseg.utils.output_folder import OutputFolderError
    check_report_out(tmp_path)  # an empty folder
    (tmp_path / 'metrics.json').write_text(json.dumps(
        dict(aAcc=1, mIoU=1, per_class={}, crf={})))  # crf.py apply's
    with pytest.raises(OutputFolderError, match='metrics.json exists and '
                       'is not a result tools/report.py wrote'):
        check_report_out(tmp_path)
    (tmp_path / 'tables.json').write_text(json.dumps(dict(
        datasets=[], models=[], records=[], claims=[])))
    check_report_out(tmp_path)
    (tmp_path / 'tables.json').write_text('{"mine": 1}')
    with pytest.raises(OutputFolderError, match='tables.json exists'):
        check_report_out(tmp_path)


def test_load_section_names_a_key_of_the_wrong_kind(tmp_path):
    path = tmp_path / 'params.yaml'
    good = dict(datasets=['cfpd'], models=['fpn_x101'], seeds=[0])
    for key, value in (('datasets', 'cfpd'), ('models', []),
                       ('seeds', ['zero']), ('seeds', [True]),
                       ('models', [None])):
        path.write_text(yaml.safe_dump(dict(good, **{key: value})))
        with pytest.raises(KeyError, match=f"{path}: top level's '{key}' "
                           f'is {re.escape(repr(value))}, not a list'):
            load_section(path)


def _write_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize('matrices, problem', [
    (np.zeros((2, 22, 22), np.int64), r'matrices of shape \(2, 22, 22\), '
     'not 2 images x 23 x 23 classes'),
    (np.zeros((3, 23, 23), np.int64), 'not 2 images'),
    (np.full((2, 23, 23), np.nan), 'float64 matrices, not pixel counts'),
    (-np.ones((2, 23, 23), np.int64), 'negative pixel counts'),
])
def test_the_report_names_a_confusion_file_that_is_not_one(
        results, matrices, problem):
    """Matrices that do not count the file's classes and images (another
    dataset's, a hand-edited file) stop the report with the file named,
    before any table is written."""
    out, params, _ = results
    path = out / 'runs' / 'cfpd' / 'fcn_r101' / 'seed0' / 'test.confusion.npz'
    _write_npz(path, stems=np.array(['a', 'b']), matrices=matrices,
               classes=np.array(CFPD_CLASSES))
    with pytest.raises(DataError, match=f'{re.escape(str(path))}: not a '
                       f'confusion file .*{problem}'):
        build_report(out, params, load_paper_figures())


def test_the_report_refuses_runs_of_one_dataset_with_other_classes(
        results):
    out, params, _ = results
    classes = list(CFPD_CLASSES[:-1])
    _write_run(out / 'runs', 'cfpd', 'fcn_r101', 0, 'test',
               [np.eye(len(classes), dtype=np.int64)], classes)
    with pytest.raises(DataError, match='its 22 classes are not those of '
                       '.*fpn_x101.*\\(23\\); runs of one dataset'):
        build_report(out, params, load_paper_figures())


def _benchmark_record():
    row = dict(name='fp32,batch=4', agreement=1.0,
               end_to_end_images_per_s=3.5, model_images_per_s=4.0,
               peak_memory_mib=900.0)
    return dict(model='fpn_x101', device_name='cpu', images_per_s=1.5,
                parameters=86e6, peak_memory_mib=800.0,
                images_per_s_with_crf=0.5,
                engine=dict(device_name='cpu', settings=[row],
                            best=row['name'],
                            end_to_end_with_crf_images_per_s=None))


def test_the_report_shows_the_benchmark_and_names_a_broken_one(results):
    out, params, _ = results
    path = out / 'benchmark.json'
    path.write_text(json.dumps(_benchmark_record()))
    write_report(build_report(out, params, load_paper_figures()), out)
    throughput = (out / 'tables.md').read_text().split(
        '## Throughput')[1].split('## ')[0]
    rows = [[cell.strip() for cell in line.split('|')[1:-1]]
            for line in throughput.splitlines() if 'measured' in line]
    assert rows == [
        ['measured, paper protocol: fpn_x101 on cpu', '1.50', '0.50',
         NOT_REPORTED, '86.0', '800'],
        ['measured, engine (fp32,batch=4, agreement 100.00 %) on cpu',
         '3.50', NOT_RUN, '4.00', '86.0', '900']]
    record = _benchmark_record()
    del record['engine']['settings'][0]['model_images_per_s']
    for text, problem in (
            ('{"model": ', 'not JSON'),
            ('[1, 2]', 'the record is not a JSON object'),
            (json.dumps(dict(_benchmark_record(), images_per_s='fast')),
             "the record has images_per_s='fast'"),
            (json.dumps(record), 'a row of "engine.settings" has '
             'model_images_per_s=None')):
        path.write_text(text)
        with pytest.raises(DataError, match=f'{re.escape(str(path))}: '
                           f'{re.escape(problem)}'):
            build_report(out, params, load_paper_figures())
