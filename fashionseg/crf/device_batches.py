"""The PyTorch CRF over a split's (image, parameter set) tasks, in batches
on its device (:func:`fashionseg.crf.refine.run_tasks` with the torch
backend; paper section 4.2's search runs 50 trials over the validation
images this way).

Each image is read once, by a pool of threads ahead of the device, and
uploaded once: its float16 scores are upsampled and turned into log
probabilities on the device, and its unary, colours and ground truth stay
there for all of its parameter sets (the tasks are ordered image by
image). A batch holds at most ``batch_size`` images and ``max_pixels``
pixels. The confusion matrices are counted on the device; only they (and
the labels, where kept) come back.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import image_log_probs
from fashionseg.crf.items import CRFInputError, read_item
from fashionseg.crf.torch_backend import dense_crf_batch
from fashionseg.evaluation.confusion import IGNORE_INDEX, confusion_matrix

READ_THREADS = 4
READ_AHEAD = 16


def _upload(raw, device: str):
    """(colours, ground truth, log probabilities), all on ``device``."""
    image, label, record = raw
    scores = torch.from_numpy(record['scores']).to(device, non_blocking=True)
    log_probs = image_log_probs(
        scores, (record['height'], record['width']),
        (record['input_height'], record['input_width']))
    return (torch.from_numpy(image).to(device), torch.from_numpy(
        label.astype(np.int64)).to(device), log_probs)


def run_batched(tasks: Sequence, backend: CRFBackend, desc: str) -> list:
    """Results of ``tasks`` (``(item, params or None, num_classes,
    keep_labels)``), in task order: ``((stem, confusion), labels or
    None)``."""
    first, uses = {}, {}
    for index, task in enumerate(tasks):
        first.setdefault(task[0].stem, index)
        uses[task[0].stem] = uses.get(task[0].stem, 0) + 1
    order = sorted(range(len(tasks)),
                   key=lambda i: (first[tasks[i][0].stem], i))
    items = [tasks[i][0] for i in sorted(first.values())]
    num_classes = {task[0].stem: task[2] for task in tasks}
    position = {item.stem: p for p, item in enumerate(items)}
    results, on_device, reads = [None] * len(tasks), {}, {}
    pool = ThreadPoolExecutor(READ_THREADS)

    def fetch(item):
        """An item's tensors on the device, reading the next ones ahead."""
        if item.stem not in on_device:
            start = position[item.stem]
            for ahead in items[start:start + READ_AHEAD]:
                if ahead.stem not in reads and ahead.stem not in on_device:
                    reads[ahead.stem] = pool.submit(
                        read_item, ahead, num_classes[ahead.stem])
            on_device[item.stem] = _upload(reads.pop(item.stem).result(),
                                           backend.device)
        return on_device[item.stem]

    def run(batch) -> None:
        refined = [p for p, (i, _) in enumerate(batch)
                   if tasks[i][1] is not None]
        try:
            labels = dense_crf_batch(
                [batch[p][1][0] for p in refined],
                [batch[p][1][2] for p in refined],
                [tasks[batch[p][0]][1] for p in refined], backend.device,
                as_tensors=True)
        except torch.OutOfMemoryError as error:
            pixels = sum(batch[p][1][1].numel() for p in refined)
            raise CRFInputError(
                f'a CRF batch of {len(refined)} images ({pixels} pixels) '
                f'does not fit in {backend.device} memory '
                f'({str(error).splitlines()[0]}); lower --batch-size (now '
                f'{backend.batch_size})') from None
        predictions = dict(zip(refined, labels))
        for p, (index, (_, label, log_probs)) in enumerate(batch):
            item, _, classes, keep_labels = tasks[index]
            pred = predictions.get(p)
            if pred is None:
                pred = log_probs.argmax(0).to(torch.uint8)
            results[index] = (
                (item.stem, confusion_matrix(label, pred, classes,
                                             IGNORE_INDEX)),
                pred.cpu().numpy() if keep_labels else None)
            uses[item.stem] -= 1
            if uses[item.stem] == 0:
                on_device.pop(item.stem, None)

    try:
        with tqdm(total=len(tasks), desc=desc, unit='img') as progress:
            batch, pixels = [], 0
            for index in order:
                data = fetch(tasks[index][0])
                size = data[1].numel()
                if backend.starts_new_call(len(batch), pixels, size):
                    run(batch)
                    progress.update(len(batch))
                    batch, pixels = [], 0
                batch.append((index, data))
                pixels += size
            if batch:
                run(batch)
                progress.update(len(batch))
    finally:
        pool.shutdown(cancel_futures=True)
    return results
