"""The paper's random search for the CRF parameters (section 4): 50
configurations drawn uniformly, with a fixed seed, from theta_alpha in
1..40, theta_beta in 1..100 and w1 in 1..15 (integers), each scored by pixel
accuracy on the validation split; the best is used on the test split."""
import json
import os
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import PARAM_RANGES, CRFParams
from fashionseg.crf.items import CRFInputError, split_items
from fashionseg.crf.refine import refine_split, run_tasks, split_accuracy
from fashionseg.errors import UsageError
from fashionseg.evaluation.confusion import confusion_path, save_confusions
from fashionseg.evaluation.metrics_file import (iou_metric_results,
                                                metrics_record)
from fashionseg.utils.atomic_write import atomic_path, write_text_atomic
from fashionseg.utils.output_folder import (check_result_file,
                                            claimed_output_folder,
                                            is_confusion_file,
                                            is_crf_metrics_file,
                                            is_search_file,
                                            refuse_under_a_file,
                                            remove_unwritten)


def sample_params(trials: int, seed: int) -> List[CRFParams]:
    """``trials`` parameter sets drawn uniformly from the paper's ranges."""
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(trials):
        values = {name: int(rng.integers(low, high + 1))
                  for name, (low, high) in PARAM_RANGES.items()}
        drawn.append(CRFParams(**values))
    return drawn


def search(scores_dir: Path, data_root: Path, split: str = 'val',
           trials: int = 50, seed: int = 0,
           workers: Optional[int] = None,
           backend: Optional[CRFBackend] = None,
           max_images: Optional[int] = None) -> dict:
    """Score each sampled parameter set by pixel accuracy on ``split``
    (with the torch backend, the trials run in batches on its device)."""
    backend = backend or CRFBackend(workers=workers)
    items, classes = split_items(scores_dir, data_root, split, max_images)
    candidates = sample_params(trials, seed)
    # The labels without CRF (the argmax) on the same backend: no process
    # pool is forked after the torch backend's threads have run, which can
    # hang the pool's workers (OpenCV's thread pool state is copied
    # half-way).
    baseline, _ = refine_split(items, classes, None, workers,
                               backend=backend)
    tasks = [(item, params, len(classes), False)
             for params in candidates for item in items]
    stats = [r[0] for r in run_tasks(tasks, workers, desc='CRF search',
                                     backend=backend)]
    results = []
    for i, params in enumerate(candidates):
        trial_stats = stats[i * len(items):(i + 1) * len(items)]
        results.append(dict(params.as_dict(),
                            accuracy=round(split_accuracy(trial_stats), 4)))
    best = max(range(len(results)), key=lambda i: results[i]['accuracy'])
    return {
        'trials': results,
        'best': candidates[best].as_dict(),
        'best_accuracy': results[best]['accuracy'],
        'accuracy_without_crf': round(split_accuracy(baseline), 4),
        'split': split,
        'num_images': len(items),
        'max_images': max_images,
        'seed': seed,
        'ranges': {k: list(v) for k, v in PARAM_RANGES.items()},
        'crf_backend': backend.describe(),
    }


def read_best_params(path: Path) -> CRFParams:
    """The parameters under ``"best"`` in a search result (or a hand-written
    file with only that key)."""
    path = Path(path)
    try:
        best = json.loads(path.read_text())['best']
        unknown = sorted(set(best) - set(PARAM_RANGES)) \
            if isinstance(best, dict) else []
        if unknown:
            # A misspelt parameter would otherwise be left out unseen.
            raise CRFInputError(
                f'{path}: "best" holds {", ".join(map(repr, unknown))}, '
                f'not a parameter of the CRF ({", ".join(PARAM_RANGES)})')
        return CRFParams(**{k: best[k] for k in PARAM_RANGES})
    except CRFInputError:
        raise
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CRFInputError(
            f'{path}: expected JSON with "best": {{"theta_alpha": .., '
            f'"theta_beta": .., "w1": ..}} ({type(error).__name__}: '
            f'{error})') from None
    except ValueError as error:
        raise CRFInputError(f'{path}: {error}') from None


def apply(scores_dir: Path, data_root: Path, split: str, params: CRFParams,
          out: Path, workers: Optional[int] = None,
          metrics_out: Optional[Path] = None,
          backend: Optional[CRFBackend] = None,
          max_images: Optional[int] = None) -> dict:
    """Refine every image of ``split``; write ``out/STEM.png`` label maps,
    the metrics (the same record as ``tools/test.py``; ``metrics_out``,
    default ``out/metrics.json``) and the per-image confusion matrices
    beside them."""
    out = Path(out)
    refuse_under_a_file(out, '--out')
    metrics_out = Path(metrics_out or out / 'metrics.json')
    if metrics_out.suffix.lower() == '.png' and \
            os.path.abspath(metrics_out.parent) == os.path.abspath(out):
        raise UsageError(f'--metrics {metrics_out}: a label map\'s name in '
                         f'--out {out}, where the image labels go; name a '
                         '.json file')
    check_result_file(metrics_out, 'tools/crf.py apply', '--metrics',
                      is_crf_metrics_file, inputs=[data_root, scores_dir],
                      beside={confusion_path(metrics_out): is_confusion_file},
                      folders={'--out': out})
    items, classes = split_items(scores_dir, data_root, split, max_images)
    # A folder of someone else's files (or of the dataset or the scores)
    # is refused before any work; what an earlier run left there and this
    # one does not rewrite goes after; one run at a time writes there.
    with claimed_output_folder(out, 'tools/crf.py apply',
                               inputs=[data_root, scores_dir],
                               kinds=('.png', '.json', '.npz')) as earlier:
        backend = backend or CRFBackend(workers=workers)
        stats, labels = refine_split(items, classes, params, workers,
                                     keep_labels=True, backend=backend)
        written = []
        for item, label in zip(items, labels):
            written.append(out / f'{item.stem}.png')
            with atomic_path(written[-1]) as tmp:
                if not cv2.imwrite(str(tmp), label):
                    raise OSError(f'{written[-1]}: could not write')
        remove_unwritten(earlier, written + [metrics_out,
                                             confusion_path(metrics_out)])
        per_image = list(stats)
        total = sum(matrix for _, matrix in per_image)
        record = dict(metrics_record(iou_metric_results(total, classes),
                                     classes, [m for _, m in per_image]),
                      crf=params.as_dict(), scores=str(scores_dir),
                      split=split, crf_backend=backend.describe())
        if max_images:
            record['max_images'] = max_images
        stems, matrices = zip(*per_image)
        save_confusions(confusion_path(metrics_out), stems, matrices,
                        classes)
        write_text_atomic(metrics_out, json.dumps(record, indent=2) + '\n')
    return record


def check_search_out(out: Path, scores_dir: Path, data_root: Path) -> None:
    """Before the search: its result file replaces nothing but an earlier
    search's, and lies outside its inputs."""
    check_result_file(out, 'tools/crf.py search', '--out', is_search_file,
                      inputs=[scores_dir, data_root])


def write_search(result: dict, out: Path) -> None:
    write_text_atomic(out, json.dumps(result, indent=2) + '\n')
