"""The paper's claims (section 5: FPN beats PSPNet, with and without the
CRF; the CRF helps), each checked by a paired bootstrap over the test
images (:mod:`fashionseg.evaluation.bootstrap`)."""
from typing import Dict, List, Sequence

import pandas as pd

from fashionseg.evaluation import bootstrap
from fashionseg.report.labels import (DATASET_NAMES, MAIN_IOU, METRIC_LABELS,
                                      NOT_RUN)

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
                                found[s]['matrices']).items()}
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
