"""The report's figures, with matplotlib: the confusion matrix of a dataset
with classes ordered from head to feet (paper Figure 3), and a panel of the
best-scoring test images (paper Figure 1: input, ground truth, prediction,
prediction with CRF, wrongly classified pixels in black)."""
from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fashionseg.crf.items import (CRFInputError, load_item,  # noqa: E402
                                  split_items)
from fashionseg.palette import label_palette  # noqa: E402
from fashionseg.report.body_order import body_order  # noqa: E402
from fashionseg.utils.atomic_write import atomic_path  # noqa: E402

# Written into each figure's PNG metadata, so that a rerun knows the
# figures it may replace (is_figure_file).
FIGURE_SOURCE = 'fashionseg tools/figures.py'


def _save(fig, out: Path) -> None:
    """Save through a temporary file and a rename."""
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format='png', dpi=120, bbox_inches='tight',
                        metadata={'Source': FIGURE_SOURCE})
    finally:
        plt.close(fig)


def is_figure_file(path: Path) -> bool:
    """A PNG this module wrote (its metadata's ``Source``)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return image.format == 'PNG' and \
                image.info.get('Source') == FIGURE_SOURCE
    except Exception:  # noqa: BLE001 (any file that is not such a PNG)
        return False


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], out: Path,
                   title: str) -> None:
    """Row-normalised confusion matrix (each ground-truth class's pixels,
    in percent, by predicted class), classes from head to feet."""
    order = body_order(classes)
    matrix = np.asarray(confusion, np.float64)[np.ix_(order, order)]
    totals = matrix.sum(1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        percent = np.where(totals > 0, 100.0 * matrix / totals, np.nan)
    names = [classes[i] for i in order]
    size = max(6.0, 0.28 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(percent, cmap='viridis', vmin=0, vmax=100)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('ground-truth class')
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label='% of the ground-truth class\'s pixels')
    _save(fig, out)


def _colour(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return palette[np.clip(label, 0, len(palette) - 1)]


def best_examples(run: Path, data_root: Path, count: int,
                  max_images: Optional[int] = None) -> List[dict]:
    """The ``count`` test images (of the first ``max_images``) with the
    highest pixel accuracy after the CRF, each with its photo, ground
    truth and both predictions."""
    run = Path(run)
    items, classes = split_items(run / 'scores_test', data_root, 'test',
                                 max_images)
    scored = []
    for item in items:
        crf_path = run / 'crf_test' / f'{item.stem}.png'
        crf = cv2.imread(str(crf_path), cv2.IMREAD_UNCHANGED)
        if crf is None:
            raise CRFInputError(f'{crf_path}: CRF label map missing')
        image, label, log_probs = load_item(item, len(classes))
        valid = label != 255
        accuracy = float((crf == label)[valid].mean()) if valid.any() else 0
        scored.append(dict(stem=item.stem, accuracy=accuracy, image=image,
                           label=label, pred=log_probs.argmax(0), crf=crf))
        # Keep only the best ``count`` in memory.
        scored = sorted(scored, key=lambda s: (-s['accuracy'], s['stem']))
        scored = scored[:count]
    return scored


def plot_examples(examples: Sequence[dict], num_classes: int,
                  out: Path) -> None:
    """One row per image: input, ground truth, prediction, prediction with
    CRF, and the CRF prediction's wrongly classified pixels in black."""
    palette = np.array(label_palette(num_classes), np.uint8)
    titles = ('input', 'ground truth', 'prediction', 'with CRF',
              'errors (black)')
    fig, axes = plt.subplots(len(examples), 5, squeeze=False,
                             figsize=(12, 3.2 * len(examples)))
    for row, example in zip(axes, examples):
        wrong = (example['crf'] != example['label']) & (
            example['label'] != 255)
        errors = np.full(wrong.shape + (3,), 255, np.uint8)
        errors[wrong] = 0
        panels = (example['image'], _colour(example['label'], palette),
                  _colour(example['pred'], palette),
                  _colour(example['crf'], palette), errors)
        for ax, panel, title in zip(row, panels, titles):
            ax.imshow(panel)
            ax.set_axis_off()
            ax.set_title(title, fontsize=9)
        row[0].set_title(f'{example["stem"]}: '
                         f'{100 * example["accuracy"]:.1f}% correct',
                         fontsize=9)
    _save(fig, out)
