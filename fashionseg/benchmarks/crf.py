"""Speed and agreement of the dense CRF backends (paper section 5 reports
0.20 images/s with the CRF on a V100).

Speed: images per second at 600 x 400 with 23 classes and 10 mean-field
iterations; pydensecrf on one core and on all cores in a process pool, the
torch backend (:mod:`fashionseg.crf.torch_backend`) on the CPU or a GPU at
several
batch sizes. Agreement: both backends on the same real images and
parameter sets, the fraction of pixels with the same label and the
difference in pixel accuracy.
"""
import os
import platform
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fashionseg.benchmarks.timing import time_batches
from fashionseg.crf.energy import (CRFParams, image_log_probs,
                                   upsampled_log_probs)
from fashionseg.crf.items import load_item
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.crf.torch_backend import dense_crf_batch
from fashionseg.dataset_folder import label_path, read_dataset_meta
from fashionseg.errors import DataError
from fashionseg.evaluation.score_files import save_scores
from fashionseg.utils.device import device_name, processor_name

HEIGHT, WIDTH, NUM_CLASSES = 600, 400, 23
PARAMS = CRFParams(theta_alpha=40, theta_beta=13, w1=10)


def benchmark_inputs(photo_path=None, seed: int = 0):
    """A 600 x 400 photo (a real one if given), random 23-class scores at
    a quarter of its size as a score file holds them (float16), and their
    log probabilities at the photo's size."""
    rng = np.random.default_rng(seed)
    if photo_path is not None:
        image = cv2.imread(str(photo_path))
        if image is None:
            raise DataError(f'{photo_path}: not a photo OpenCV can read')
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (WIDTH, HEIGHT),
                           interpolation=cv2.INTER_AREA)
    else:
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    scores = rng.normal(0, 2, (NUM_CLASSES, HEIGHT // 4, WIDTH // 4)).astype(
        np.float16)
    return image, scores, upsampled_log_probs(scores, HEIGHT, WIDTH, HEIGHT,
                                              WIDTH)


def write_truth_like_scores(data_root: Path, split: str,
                            stems: Sequence[str], out: Path, seed: int = 0,
                            strength: float = 3.0, noise: float = 1.5
                            ) -> None:
    """Score files for ``stems`` of a converted split that look like a
    network's and that the CRF has work to do on: each image's ground
    truth at a quarter of its size, one-hot times ``strength``, plus
    Gaussian noise (ignored pixels scored as class 0). A model trained
    for a few epochs labels nearly every pixel alike, and the CRF leaves
    such labels as they are: the backends would agree on nothing."""
    rng = np.random.default_rng(seed)
    classes = len(read_dataset_meta(data_root)['classes'])
    Path(out).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        label = cv2.imread(str(label_path(data_root, split, stem)),
                           cv2.IMREAD_UNCHANGED)
        height, width = label.shape
        small = cv2.resize(label, (-(-width // 4), -(-height // 4)),
                           interpolation=cv2.INTER_NEAREST)
        small = np.where(small < classes, small, 0)
        scores = strength * np.eye(classes, dtype=np.float32)[small].transpose(
            2, 0, 1) + rng.normal(0, noise, (classes,) + small.shape)
        save_scores(Path(out) / f'{stem}.npz', scores, stem, height, width,
                    small.shape[0] * 4, small.shape[1] * 4)


def _reference_labels(task):
    """pydensecrf's labels of one (image, log probabilities, parameter set),
    and the seconds they took on this core."""
    image, log_probs, params = task
    start = time.perf_counter()
    labels = dense_crf(image, log_probs, params)
    return labels, time.perf_counter() - start


def _init():
    torch.set_num_threads(1)


def images_per_second(image, log_probs, workers: int, images: int) -> float:
    """pydensecrf's rate on one core, or in a pool of ``workers``
    processes, with a progress bar on stderr."""
    tasks = [(image, log_probs, PARAMS)] * images
    desc = 'pydensecrf, ' + ('one core' if workers == 1
                             else f'{workers} processes')
    if workers == 1:
        start = time.perf_counter()
        for task in tqdm(tasks, desc=desc, unit='img', leave=False):
            _reference_labels(task)
        return images / (time.perf_counter() - start)
    with get_context('fork').Pool(workers, initializer=_init) as pool:
        pool.map(_reference_labels, tasks[:workers])  # warm the workers
        start = time.perf_counter()
        for _ in tqdm(pool.imap_unordered(_reference_labels, tasks),
                      total=len(tasks), desc=desc, unit='img', leave=False):
            pass
        return images / (time.perf_counter() - start)


def torch_images_per_second(image, scores, device: str, batch_size: int,
                            batches: int) -> float:
    """The torch backend's rate on ``device`` over whole batches, after one
    warm-up batch: inputs start on the host (the photo, and float16 scores
    at a quarter of its size), are uploaded, upsampled and turned into log
    probabilities on the device, refined, and the labels come back; the
    device is synchronised only at the end."""
    images = [image] * batch_size
    params = [PARAMS] * batch_size

    def one_batch():
        log_probs = [image_log_probs(
            torch.from_numpy(scores).to(device), (HEIGHT, WIDTH),
            (HEIGHT, WIDTH)) for _ in range(batch_size)]
        return dense_crf_batch(images, log_probs, params, device,
                               as_tensors=True)

    def step(index: int) -> int:
        return len([labels.to('cpu', non_blocking=True)
                    for labels in one_batch()])

    return time_batches(step, batches, 1, device,
                        f'torch CRF on {device}, batch {batch_size}')


def run_benchmark(photo_path=None, images: int = 8,
                  backends: Sequence[str] = ('pydensecrf', 'torch'),
                  device: str = 'cpu',
                  batch_sizes: Sequence[int] = (1,)) -> dict:
    image, scores, log_probs = benchmark_inputs(photo_path)
    cores = os.cpu_count() or 1
    record = {
        'image': f'{HEIGHT} x {WIDTH}',
        'classes': NUM_CLASSES,
        'iterations': 10,
        'params': PARAMS.as_dict(),
        'cores': cores,
        'machine': processor_name(),
        'platform': platform.platform(),
        'torch': torch.__version__,
    }
    if 'pydensecrf' in backends:
        one = images_per_second(image, log_probs, 1, max(2, images // 4))
        pool = images_per_second(image, log_probs, cores, images * cores // 2)
        record['pydensecrf'] = {
            'images_per_second_one_core': round(one, 3),
            'images_per_second_all_cores': round(pool, 3)}
    if 'torch' in backends:
        rates = {}
        threads = torch.get_num_threads()
        if device == 'cpu':
            torch.set_num_threads(1)
            rates['one_thread'] = {
                str(b): round(torch_images_per_second(
                    image, scores, 'cpu', b, max(1, images // (4 * b))),
                    3) for b in batch_sizes}
            torch.set_num_threads(threads)
        rates[f'{threads}_threads' if device == 'cpu' else 'device'] = {
            str(b): round(torch_images_per_second(
                image, scores, device, b, max(1, images // b)), 3)
            for b in batch_sizes}
        record['torch'] = dict(
            device=device if device == 'cpu' else device_name(device),
            images_per_second_by_batch_size=rates)
    if 'pydensecrf' in backends and 'torch' in backends and device == 'cpu':
        record['torch_one_thread_time_over_pydensecrf_one_core'] = round(
            record['pydensecrf']['images_per_second_one_core'] /
            rates['one_thread'][str(batch_sizes[0])], 3)
    return record


def agreement(items: Sequence, classes: Sequence[str],
              params: Sequence[CRFParams], device: str = 'cpu',
              batch_size: int = 8, workers: int = 1) -> dict:
    """Both backends on ``items`` (split items with scores) for each
    parameter set: the fraction of pixels labelled alike, and pixel
    accuracy (percent) of each. pydensecrf runs in a pool of ``workers``
    processes, one image and parameter set each; the mean time of one such
    call on one core is the paper protocol's CRF cost per image."""
    loaded = [load_item(item, len(classes)) for item in items]
    tasks = [(image, log_probs, p) for p in params
             for image, _, log_probs in loaded]
    progress = dict(total=len(tasks), desc='pydensecrf', unit='img',
                    leave=False)
    if workers > 1 and len(tasks) > 1:
        with get_context('fork').Pool(min(workers, len(tasks)),
                                      initializer=_init) as pool:
            references = list(tqdm(pool.imap(_reference_labels, tasks),
                                   **progress))
    else:
        references = list(tqdm(map(_reference_labels, tasks), **progress))
    rows = []
    with tqdm(total=len(tasks), desc='torch CRF', unit='img',
              leave=False) as torch_progress:
        for index, p in enumerate(params):
            same = total = right_py = right_torch = labelled = changed = 0
            done = references[index * len(loaded):(index + 1) * len(loaded)]
            for start in range(0, len(loaded), batch_size):
                chunk = loaded[start:start + batch_size]
                fast = dense_crf_batch([c[0] for c in chunk],
                                       [c[2] for c in chunk], [p] * len(chunk),
                                       device)
                torch_progress.update(len(chunk))
                for (_, label, log_probs), torch_labels, (reference, _) in \
                        zip(chunk, fast, done[start:start + batch_size]):
                    valid = label != 255
                    # How much the CRF changes the labelling at all: agreement
                    # on pixels it leaves alone says little.
                    changed += int((reference != log_probs.argmax(0)).sum())
                    same += int((reference == torch_labels).sum())
                    total += reference.size
                    right_py += int((reference == label)[valid].sum())
                    right_torch += int((torch_labels == label)[valid].sum())
                    labelled += int(valid.sum())
            rows.append(dict(p.as_dict(), agreement=same / total,
                             changed_by_crf=changed / total,
                             accuracy_pydensecrf=100 * right_py / labelled,
                             accuracy_torch=100 * right_torch / labelled))
    return {
        'images': len(items),
        'device': device,
        'pydensecrf_seconds_per_image': sum(
            seconds for _, seconds in references) / len(references),
        'image_size': list(loaded[0][1].shape) if loaded else None,
        'param_sets': rows,
        'min_agreement': min(r['agreement'] for r in rows),
        'max_accuracy_difference': max(
            abs(r['accuracy_pydensecrf'] - r['accuracy_torch'])
            for r in rows),
    }
