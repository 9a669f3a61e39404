"""Loading the harness's runs for the report: the per-image confusion
matrices that ``tools/test.py`` (``test``, without CRF) and ``tools/crf.py
apply`` (``crf``, with CRF) saved under ``RESULTS/runs/DATASET/MODEL/seedN/``,
and the records (one per figure) computed from them."""
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from fashionseg.errors import DataError
from fashionseg.evaluation.confusion import load_confusions
from fashionseg.evaluation.metrics import (background_accuracy, class_iou,
                                           split_summary)
from fashionseg.report.labels import STAGES


def run_dir(runs: Path, dataset: str, model: str, seed: int) -> Path:
    return Path(runs) / dataset / model / f'seed{seed}'


def load_runs(runs: Path, datasets: Sequence[str], models: Sequence[str],
              seeds: Sequence[int]) -> Dict[tuple, dict]:
    """Every run's per-image confusion matrices (:func:`load_confusions`
    plus ``path``), read once, keyed (dataset, model, table, seed) in that
    nesting order; runs not there yet are absent."""
    loaded, first = {}, {}
    for dataset in datasets:
        for model in models:
            for seed in seeds:
                folder = run_dir(runs, dataset, model, seed)
                for table, stage in STAGES.items():
                    path = folder / f'{stage}.confusion.npz'
                    if path.is_file():
                        saved = dict(load_confusions(path), path=path)
                        _check_same_classes(saved, first.setdefault(
                            dataset, saved))
                        loaded[(dataset, model, table, seed)] = saved
    return loaded


def _check_same_classes(saved: dict, first: dict) -> None:
    """Runs of one dataset count the same classes; a run of another
    dataset left in its folder would mix them in the tables."""
    if saved['classes'] != first['classes']:
        raise DataError(
            f'{saved["path"]}: its {len(saved["classes"])} classes are not '
            f'those of {first["path"]} ({len(first["classes"])}); runs of '
            'one dataset must count the same classes')


def measured_records(loaded: Dict[tuple, dict]) -> List[dict]:
    """One record per measured figure: dataset, model, table, seed, metric,
    value (percent)."""
    records = []
    for (dataset, model, table, seed), saved in loaded.items():
        for metric, value in split_summary(saved['matrices']).items():
            records.append(dict(
                source='measured', dataset=dataset, method=model,
                table=table, seed=seed, metric=metric, value=value))
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
