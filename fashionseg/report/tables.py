"""The report: the paper's Tables 1 and 2 (section 5) regenerated from the
harness's runs, beside the paper's own figures.

Reads, for each dataset, model and seed of a params.yaml section, the
per-image confusion matrices that ``tools/test.py`` (``test``, without CRF)
and ``tools/crf.py apply`` (``crf``, with CRF) saved under
``RESULTS/runs/DATASET/MODEL/seedN/``, recomputes every figure from them
(:mod:`fashionseg.evaluation.confusion`) into the tables beside the
paper's figures."""
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from fashionseg.report.body_order import body_order
from fashionseg.report.labels import (ABSENT, DATASET_NAMES, MAIN_IOU,
                                      METRIC_LABELS, MODEL_NAMES, NOT_REPORTED,
                                      NOT_RUN, signed)


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` in Markdown, every cell as formatted (tabulate would read
    a column of figures as numbers and print 93.50 as 93.5)."""
    return frame.to_markdown(index=False, disable_numparse=True)


def format_cell(values: Sequence[float]) -> str:
    """Mean over seeds, with the standard deviation when there are
    several."""
    values = [v for v in values if v is not None]
    if not values:
        return NOT_RUN
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'


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
                    cells[(d, metric)] = signed(
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
    """The throughput table: the paper's figures, the paper's protocol
    measured here, and the fast inference engine's best setting that
    agrees with eager fp32 (:mod:`fashionseg.benchmarks.engine_throughput`)."""
    cited = paper['throughput']
    columns = ('images/s without CRF', 'images/s with CRF',
               'model-only images/s', 'parameters (M)', 'peak memory (MiB)')
    rows = [dict(system=f'paper ({cited["device"]})',
                 **dict(zip(columns, (
                     f'{cited["without_crf"]:.2f}',
                     f'{cited["with_crf"]:.2f}', NOT_REPORTED,
                     NOT_REPORTED, NOT_REPORTED))))]
    if benchmark is None:
        rows.append(dict(system='measured', **dict.fromkeys(columns,
                                                            NOT_RUN)))
        return markdown_table(pd.DataFrame(rows))
    parameters = f'{benchmark["parameters"] / 1e6:.1f}'
    rows.append(dict(zip(('system',) + columns, (
        f'measured, paper protocol: {benchmark["model"]} on '
        f'{benchmark["device_name"]}',
        f'{benchmark["images_per_s"]:.2f}',
        (f'{benchmark["images_per_s_with_crf"]:.2f}'
         if 'images_per_s_with_crf' in benchmark else NOT_RUN),
        NOT_REPORTED, parameters, f'{benchmark["peak_memory_mib"]:.0f}'))))
    engine = benchmark.get('engine')
    best = next((row for row in (engine or {}).get('settings', [])
                 if row['name'] == engine.get('best')), None)
    if best is not None:
        with_crf = engine.get('end_to_end_with_crf_images_per_s')
        rows.append(dict(zip(('system',) + columns, (
            f'measured, engine ({best["name"]}, agreement '
            f'{100 * best["agreement"]:.2f} %) on {engine["device_name"]}',
            f'{best["end_to_end_images_per_s"]:.2f}',
            f'{with_crf:.2f}' if with_crf is not None else NOT_RUN,
            f'{best["model_images_per_s"]:.2f}', parameters,
            f'{best["peak_memory_mib"]:.0f}'))))
    return markdown_table(pd.DataFrame(rows))
