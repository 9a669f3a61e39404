"""The report: the paper's Tables 1 and 2 (section 5) regenerated from the
harness's runs, beside the paper's own figures.

Reads, for each dataset, model and seed of a params.yaml section, the
per-image confusion matrices that ``tools/test.py`` (``test``, without CRF)
and ``tools/crf.py apply`` (``crf``, with CRF) saved under
``RESULTS/runs/DATASET/MODEL/seedN/``, recomputes every figure from them
(:mod:`fashionseg.confusion`), and writes ``tables.md`` (pandas and
tabulate), ``tables.csv`` and ``tables.json`` (one record per figure). The
paper's figures come from ``paper_figures.yaml`` and nowhere else.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import yaml

from custom_datasets.body_order import body_order
from . import bootstrap
from .confusion import (background_accuracy, class_iou, load_confusions,
                        summary)
from .io import write_text_atomic

PAPER_FIGURES = Path(__file__).with_name('paper_figures.yaml')

# The harness's models, in the order the tables list them.
MODEL_NAMES = {
    'fpn_x101': 'FPN (ResNeXt-101), the paper\'s head',
    'semfpn_x101': 'Semantic FPN (ResNeXt-101)',
    'pspnet_r101': 'PSPNet (ResNet-101-D8)',
    'fcn_r101': 'FCN (ResNet-101-D8)',
}
DATASET_NAMES = {'fashionista': 'Fashionista', 'cfpd': 'CFPD', 'ccp': 'CCP'}
# Which run a table is made of: the test-set predictions without and with
# the CRF (paper Tables 1 and 2).
STAGES = {'without_crf': 'test', 'with_crf': 'crf'}
TABLE_TITLES = {'without_crf': 'Table 1: without CRF',
                'with_crf': 'Table 2: with CRF'}
# The tables' main IoU column and why (README, "Report").
MAIN_IOU = 'fgIoU'
METRIC_LABELS = {
    'aAcc': 'acc',
    'fgIoU': 'IoU',
    'mIoU': 'mIoU (mmseg)',
}
NOT_RUN = 'not run yet'
NOT_REPORTED = '–'
ABSENT = 'absent'


def load_section(params_path: Path, section: Optional[str] = None) -> dict:
    """The pipeline parameters of the paper's run (top level) or of a
    section (``demo``)."""
    params = yaml.safe_load(Path(params_path).read_text())
    if section:
        if section not in params:
            raise KeyError(f'{params_path}: no section {section!r}')
        params = params[section]
    for key in ('datasets', 'models', 'seeds'):
        if key not in params:
            raise KeyError(f'{params_path}: {section or "top level"} has no '
                           f'{key!r}')
    return params


def load_paper_figures(path: Path = PAPER_FIGURES) -> dict:
    return yaml.safe_load(Path(path).read_text())


def run_dir(runs: Path, dataset: str, model: str, seed: int) -> Path:
    return Path(runs) / dataset / model / f'seed{seed}'


def load_runs(runs: Path, datasets: Sequence[str], models: Sequence[str],
              seeds: Sequence[int]) -> Dict[tuple, dict]:
    """Every run's per-image confusion matrices (:func:`load_confusions`
    plus ``path``), read once, keyed (dataset, model, table, seed) in that
    nesting order; runs not there yet are absent."""
    loaded = {}
    for dataset in datasets:
        for model in models:
            for seed in seeds:
                folder = run_dir(runs, dataset, model, seed)
                for table, stage in STAGES.items():
                    path = folder / f'{stage}.confusion.npz'
                    if path.is_file():
                        loaded[(dataset, model, table, seed)] = dict(
                            load_confusions(path), path=path)
    return loaded


def measured_records(loaded: Dict[tuple, dict]) -> List[dict]:
    """One record per measured figure: dataset, model, table, seed, metric,
    value (percent)."""
    records = []
    for (dataset, model, table, seed), saved in loaded.items():
        for metric, value in summary(saved['matrices'].sum(0)).items():
            records.append(dict(
                source='measured', dataset=dataset, method=model,
                table=table, seed=seed, metric=metric, value=value))
    return records


def paper_records(paper: dict) -> List[dict]:
    """The paper's figures as records like :func:`measured_records`'."""
    records = []
    for table, methods in paper['tables'].items():
        for method, by_dataset in methods.items():
            for dataset, figures in by_dataset.items():
                for metric, key in (('aAcc', 'acc'), (MAIN_IOU, 'iou')):
                    records.append(dict(
                        source='paper', dataset=dataset, method=method,
                        table=table, seed=None, metric=metric,
                        value=float(figures[key])))
    return records


def per_class_records(loaded: Dict[tuple, dict]) -> List[dict]:
    """Per-class IoU (MMSegmentation's definition, percent) of every run."""
    records = []
    for (dataset, model, table, seed), saved in loaded.items():
        ious = class_iou(saved['matrices'].sum(0))
        for name, iou in zip(saved['classes'], ious):
            records.append(dict(
                dataset=dataset, method=model, table=table, seed=seed,
                cls=name, IoU=None if np.isnan(iou) else 100.0 * iou))
    return records


def background_records(loaded: Dict[tuple, dict]) -> Dict[str, float]:
    """Measured background-only accuracy per dataset (from the ground truth
    of the first test run found)."""
    found = {}
    for (dataset, _, table, _), saved in loaded.items():
        if table == 'without_crf' and dataset not in found:
            found[dataset] = background_accuracy(saved['matrices'].sum(0))
    return found


PAPER_MODEL = 'fpn_x101'
SHORT_NAMES = {'fpn_x101': 'FPN', 'semfpn_x101': 'semantic FPN',
               'pspnet_r101': 'PSPNet', 'fcn_r101': 'FCN'}


def paper_claims(models: Sequence[str]) -> List[tuple]:
    """The comparisons the paper makes, with this harness's runs:
    (claim, (model, table) that should be better, (model, table))."""
    if PAPER_MODEL not in models:
        return []
    fpn = SHORT_NAMES[PAPER_MODEL]
    baselines = [m for m in models if m != PAPER_MODEL]
    claims = []
    for table, words in (('without_crf', 'without CRF'),
                         ('with_crf', 'with CRF')):
        for model in baselines:
            claims.append((f'{fpn} beats {SHORT_NAMES.get(model, model)}, '
                           f'both {words}', (PAPER_MODEL, table),
                           (model, table)))
    claims.append((f'the CRF improves {fpn}', (PAPER_MODEL, 'with_crf'),
                   (PAPER_MODEL, 'without_crf')))
    for model in baselines:
        claims.append((f'{fpn} without CRF beats '
                       f'{SHORT_NAMES.get(model, model)} with CRF',
                       (PAPER_MODEL, 'without_crf'), (model, 'with_crf')))
    return claims


def claim_records(loaded: Dict[tuple, dict], datasets: Sequence[str],
                  models: Sequence[str],
                  resamples: int = bootstrap.RESAMPLES,
                  seed: int = bootstrap.SEED) -> List[dict]:
    """Each claim on each dataset: the difference of every figure, its
    paired-bootstrap 95 % interval over test images (pooled over the seeds
    both systems have) and the verdict; ``None`` where not run yet."""
    resampled, full = {}, {}  # per run: its figures on each resample
    records = []
    for dataset in datasets:
        counts = None
        for claim, better, other in paper_claims(models):
            runs_of = [{s: saved for (d, m, t, s), saved in loaded.items()
                        if (d, m, t) == (dataset,) + side}
                       for side in (better, other)]
            common = sorted(set(runs_of[0]) & set(runs_of[1]))
            record = dict(claim=claim, dataset=dataset, seeds=common,
                          better=list(better), other=list(other))
            if not common:
                records.append(dict(record, figures=None))
                continue
            reference = runs_of[0][common[0]]
            for found in runs_of:
                for s in common:
                    if found[s]['stems'] != reference['stems']:
                        raise ValueError(
                            f'{found[s]["path"]} and {reference["path"]} '
                            'hold different test images; the bootstrap '
                            'pairs images')
            if counts is None or len(counts[0]) != len(reference['stems']):
                counts = bootstrap.resample_counts(
                    len(reference['stems']), resamples, seed)
            sides = []
            for found in runs_of:
                for s in common:
                    path = found[s]['path']
                    if path not in resampled:
                        resampled[path] = bootstrap.resampled_metrics(
                            found[s]['matrices'], counts)
                        full[path] = {
                            k: float(v) for k, v in bootstrap.metrics_of(
                                found[s]['matrices'].sum(0)).items()}
                sides.append(([resampled[found[s]['path']] for s in common],
                              [full[found[s]['path']] for s in common]))
            figures = bootstrap.compare(sides[0][0], sides[1][0],
                                        sides[0][1], sides[1][1])
            records.append(dict(record, figures=figures,
                                resamples=resamples, bootstrap_seed=seed))
    return records


def claims_table(claims: Sequence[dict]) -> pd.DataFrame:
    rows = []
    for record in claims:
        row = {'claim': record['claim'],
               'dataset': DATASET_NAMES.get(record['dataset'],
                                            record['dataset'])}
        for metric in ('aAcc', MAIN_IOU):
            label = METRIC_LABELS[metric]
            if record['figures'] is None:
                row[f'{label}: difference [95% CI]'] = NOT_RUN
                row[f'{label}: supported?'] = NOT_RUN
                continue
            f = record['figures'][metric]
            row[f'{label}: difference [95% CI]'] = \
                f'{f["difference"]:+.2f} [{f["low"]:+.2f}, {f["high"]:+.2f}]'
            row[f'{label}: supported?'] = f['verdict']
        row['seeds'] = ', '.join(map(str, record['seeds'])) or NOT_RUN
        rows.append(row)
    return pd.DataFrame(rows)


def format_cell(values: Sequence[float]) -> str:
    """Mean over seeds, with the standard deviation when there are
    several."""
    values = [v for v in values if v is not None]
    if not values:
        return NOT_RUN
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'


def _signed(value: float) -> str:
    return f'{value:+.2f}'


def results_table(table: str, records: pd.DataFrame, paper: dict,
                  datasets: Sequence[str], models: Sequence[str],
                  background: Dict[str, float]) -> pd.DataFrame:
    """One of the paper's tables: cited rows, measured rows, and the
    measured FPN's difference from the paper's."""
    columns = [(d, m) for d in datasets for m in METRIC_LABELS]
    rows = []

    def add_row(method: str, source: str, cells: dict):
        row = {('', 'method'): method, ('', 'source'): source}
        for column in columns:
            row[column] = cells.get(column, NOT_REPORTED)
        rows.append(row)

    cells = {(d, 'aAcc'): f'{paper["background_only"][d]:.2f}'
             for d in datasets if d in paper['background_only']}
    if cells:
        add_row('Background only', 'paper', cells)
    add_row('Background only', 'measured (test ground truth)',
            {(d, 'aAcc'): (f'{background[d]:.2f}' if d in background
                           else NOT_RUN) for d in datasets})
    cited = records[(records.source == 'paper') & (records.table == table)]
    for key, method in paper['methods'].items():
        cells = {}
        for d in datasets:
            for metric in ('aAcc', MAIN_IOU):
                hit = cited[(cited.method == key) & (cited.dataset == d) &
                            (cited.metric == metric)]
                if len(hit):
                    cells[(d, metric)] = f'{hit.value.iloc[0]:.2f}'
        if cells:
            add_row(method['name'], f'paper ({method["cites"]})', cells)
    ours = records[(records.source == 'measured') & (records.table == table)]
    for model in models:
        cells = {}
        for d, metric in columns:
            hit = ours[(ours.method == model) & (ours.dataset == d) &
                       (ours.metric == metric)]
            cells[(d, metric)] = format_cell(hit.value.tolist())
        add_row(MODEL_NAMES.get(model, model), 'measured', cells)
    # The measured FPN against the paper's FPN.
    for key, method in paper['methods'].items():
        model = method.get('measured_as')
        if model not in models:
            continue
        cells = {}
        for d in datasets:
            for metric in ('aAcc', MAIN_IOU):
                hit_paper = cited[(cited.method == key) &
                                  (cited.dataset == d) &
                                  (cited.metric == metric)]
                hit_ours = ours[(ours.method == model) &
                                (ours.dataset == d) & (ours.metric == metric)]
                if len(hit_paper) and len(hit_ours):
                    cells[(d, metric)] = _signed(
                        hit_ours.value.mean() - hit_paper.value.iloc[0])
        if cells:
            add_row(f'{MODEL_NAMES.get(model, model)} − paper\'s '
                    f'{method["name"]}', 'difference', cells)
    frame = pd.DataFrame(rows)
    frame.columns = [
        'method' if c == ('', 'method') else 'source' if c == ('', 'source')
        else f'{DATASET_NAMES.get(c[0], c[0])} {METRIC_LABELS[c[1]]}'
        for c in frame.columns]
    return frame


def per_class_table(dataset: str, per_class: pd.DataFrame,
                    models: Sequence[str]) -> Optional[pd.DataFrame]:
    """Rows: the dataset's classes, head to feet; columns: each model
    without and with the CRF; cells: IoU in percent, mean over seeds
    (``absent``: the class is in neither the test ground truth nor the
    prediction)."""
    frame = per_class[per_class.dataset == dataset]
    if frame.empty:
        return None
    classes = list(dict.fromkeys(frame.cls))
    classes = [classes[i] for i in body_order(classes)]
    table = pd.DataFrame({'class': classes})
    for model in models:
        for key, suffix in (('without_crf', ''), ('with_crf', ' + CRF')):
            part = frame[(frame.method == model) & (frame.table == key)]
            cells = []
            for name in classes:
                values = part[part.cls == name].IoU
                if values.empty:
                    cells.append(NOT_RUN)
                elif values.isna().all():
                    cells.append(ABSENT)
                else:
                    cells.append(format_cell(values.dropna().tolist()))
            table[f'{model}{suffix}'] = cells
    return table


def benchmark_section(benchmark: Optional[dict], paper: dict) -> str:
    cited = paper['throughput']
    rows = [dict(system=f'paper ({cited["device"]})',
                 **{'images/s without CRF': f'{cited["without_crf"]:.2f}',
                    'images/s with CRF': f'{cited["with_crf"]:.2f}',
                    'parameters (M)': NOT_REPORTED,
                    'peak memory (MiB)': NOT_REPORTED})]
    if benchmark is None:
        rows.append({'system': 'measured', 'images/s without CRF': NOT_RUN,
                     'images/s with CRF': NOT_RUN,
                     'parameters (M)': NOT_RUN, 'peak memory (MiB)': NOT_RUN})
    else:
        rows.append({
            'system': f'measured: {benchmark["model"]} on '
                      f'{benchmark["device_name"]}',
            'images/s without CRF': f'{benchmark["images_per_s"]:.2f}',
            'images/s with CRF': (
                f'{benchmark["images_per_s_with_crf"]:.2f}'
                if 'images_per_s_with_crf' in benchmark else NOT_RUN),
            'parameters (M)': f'{benchmark["parameters"] / 1e6:.1f}',
            'peak memory (MiB)': f'{benchmark["peak_memory_mib"]:.0f}'})
    return pd.DataFrame(rows).to_markdown(index=False)


def build_report(results: Path, params: dict, paper: dict) -> dict:
    """Everything the report holds, from the files under ``results``."""
    results = Path(results)
    datasets, models = list(params['datasets']), list(params['models'])
    seeds = [int(s) for s in params['seeds']]
    loaded = load_runs(results / 'runs', datasets, models, seeds)
    records = pd.DataFrame(
        measured_records(loaded) + paper_records(paper),
        columns=['source', 'dataset', 'method', 'table', 'seed', 'metric',
                 'value'])
    per_class = pd.DataFrame(
        per_class_records(loaded),
        columns=['dataset', 'method', 'table', 'seed', 'cls', 'IoU'])
    background = background_records(loaded)
    benchmark_path = results / 'benchmark.json'
    benchmark = json.loads(benchmark_path.read_text()) \
        if benchmark_path.is_file() else None
    claims = claim_records(loaded, datasets, models)
    return dict(datasets=datasets, models=models, seeds=seeds,
                records=records, per_class=per_class, background=background,
                benchmark=benchmark, paper=paper, results=results,
                claims=claims)


def render_markdown(report: dict) -> str:
    datasets, models = report['datasets'], report['models']
    paper, results = report['paper'], report['results']
    lines = [
        f'# Results: {", ".join(DATASET_NAMES.get(d, d) for d in datasets)}',
        '',
        'Regenerated by the pipeline\'s report stage from the per-image '
        'confusion matrices under `runs/`; the paper\'s figures come from '
        '`fashionseg/paper_figures.yaml` '
        f'({" ".join(paper["source"].split())}).',
        '',
        'Test split, percent. `acc` is pixel accuracy (background '
        'included). `IoU` is the main column: the mean IoU of Tangseng et '
        'al.\'s evaluation code (foreground classes, summed intersections '
        'over summed unions), the code behind the OE figures the paper '
        'compares with. `mIoU (mmseg)` is MMSegmentation\'s definition '
        '(per-class IoU on the whole split, averaged over classes). '
        f'Measured cells are the mean over seeds {report["seeds"]}, '
        '± the standard deviation where there are several; '
        f'"{NOT_RUN}" marks runs the pipeline has not produced yet, '
        f'"{NOT_REPORTED}" figures the source does not give.',
        '',
    ]
    for table in STAGES:
        frame = results_table(table, report['records'], paper, datasets,
                              models, report['background'])
        lines += [f'## {TABLE_TITLES[table]}', '',
                  frame.to_markdown(index=False), '']
    claims = report['claims']
    lines += [
        '## Do our runs support the paper\'s claims?', '',
        'Each line compares two of this harness\'s systems on the test '
        'set: the difference (first minus second, percentage points), its '
        f'95 % interval from a paired bootstrap over the test images '
        f'({bootstrap.RESAMPLES:,} resamples, seed {bootstrap.SEED}; '
        'mean IoU recomputed on each resample from the per-image confusion '
        'matrices, each system averaged over its seeds), and whether it '
        'supports the claim: yes (the interval lies above 0), no (below 0) '
        'or inconclusive (it holds 0).', '',
        claims_table(claims).to_markdown(index=False) if claims
        else f'{NOT_RUN}: the paper\'s FPN is not among the models.', '']
    lines += ['## Throughput', '',
              'Inference at batch size 1 on the test images, without and '
              'with the dense CRF (paper section 5).', '',
              benchmark_section(report['benchmark'], paper), '']
    lines += ['## Per-class IoU', '',
              'MMSegmentation\'s per-class IoU on the test split, mean over '
              f'seeds; "{ABSENT}": the class is in neither the ground truth '
              'nor the prediction.', '']
    for dataset in datasets:
        table = per_class_table(dataset, report['per_class'], models)
        lines += [f'### {DATASET_NAMES.get(dataset, dataset)}', '']
        lines += [table.to_markdown(index=False) if table is not None
                  else NOT_RUN, '']
    lines += ['## Figures', '']
    for dataset in datasets:
        name = DATASET_NAMES.get(dataset, dataset)
        for suffix, title in (('confusion', 'confusion matrix'),
                              ('examples', 'best test images')):
            path = Path('figures') / f'{dataset}_{suffix}.png'
            if (results / path).is_file():
                lines.append(f'![{name}: {title}]({path.as_posix()})')
            else:
                lines.append(f'{name}, {title}: {NOT_RUN}')
        lines.append('')
    return '\n'.join(lines)


def write_report(report: dict, out: Path) -> None:
    """``tables.md``, ``tables.csv`` (one row per figure) and
    ``tables.json``, each written atomically."""
    out = Path(out)
    records = report['records'].copy()
    records['seed'] = records['seed'].astype('Int64')
    write_text_atomic(out / 'tables.md', render_markdown(report) + '\n')
    write_text_atomic(out / 'tables.csv', records.to_csv(index=False))
    data = dict(
        datasets=report['datasets'], models=report['models'],
        seeds=report['seeds'], main_iou=MAIN_IOU,
        records=json.loads(records.to_json(orient='records')),
        per_class=json.loads(report['per_class'].to_json(orient='records')),
        background_only=report['background'],
        benchmark=report['benchmark'], claims=report['claims'])
    write_text_atomic(out / 'tables.json', json.dumps(data, indent=2) + '\n')
