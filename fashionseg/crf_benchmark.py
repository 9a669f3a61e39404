"""Speed of the dense CRF (paper section 5 reports 0.20 images/s with the
CRF on a V100): images per second at 600 x 400 with 23 classes and 10
mean-field iterations, on one core and on all cores in a process pool."""
import os
import platform
import time
from multiprocessing import get_context

import cv2
import numpy as np

from .crf import CRFParams, dense_crf, upsampled_log_probs

HEIGHT, WIDTH, NUM_CLASSES = 600, 400, 23
PARAMS = CRFParams(theta_alpha=40, theta_beta=13, w1=10)


def benchmark_inputs(photo_path=None, seed: int = 0):
    """A 600 x 400 photo (a real one if given) and random 23-class scores at
    a quarter of its size, as the network would give them."""
    rng = np.random.default_rng(seed)
    if photo_path is not None:
        image = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (WIDTH, HEIGHT),
                           interpolation=cv2.INTER_AREA)
    else:
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    scores = rng.normal(0, 2, (NUM_CLASSES, HEIGHT // 4, WIDTH // 4))
    return image, upsampled_log_probs(scores, HEIGHT, WIDTH, HEIGHT, WIDTH)


def _one(args):
    image, log_probs = args
    return dense_crf(image, log_probs, PARAMS)


def _init():
    import torch
    torch.set_num_threads(1)


def images_per_second(image, log_probs, workers: int, images: int) -> float:
    tasks = [(image, log_probs)] * images
    if workers == 1:
        start = time.perf_counter()
        for task in tasks:
            _one(task)
        return images / (time.perf_counter() - start)
    with get_context('fork').Pool(workers, initializer=_init) as pool:
        pool.map(_one, tasks[:workers])  # warm the workers
        start = time.perf_counter()
        pool.map(_one, tasks, chunksize=1)
        return images / (time.perf_counter() - start)


def run_benchmark(photo_path=None, images: int = 8) -> dict:
    image, log_probs = benchmark_inputs(photo_path)
    cores = os.cpu_count() or 1
    one = images_per_second(image, log_probs, 1, max(2, images // 4))
    pool = images_per_second(image, log_probs, cores, images * cores // 2)
    return {
        'backend': 'pydensecrf',
        'image': f'{HEIGHT} x {WIDTH}',
        'classes': NUM_CLASSES,
        'iterations': 10,
        'params': PARAMS.as_dict(),
        'images_per_second_one_core': round(one, 3),
        'images_per_second_all_cores': round(pool, 3),
        'cores': cores,
        'machine': platform.processor() or platform.machine(),
        'platform': platform.platform(),
    }
