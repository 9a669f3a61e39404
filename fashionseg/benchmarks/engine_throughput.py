"""Throughput of the fast inference engine (:mod:`fashionseg.inference.
segmenter`), the harness's own path beside the paper's protocol
(:mod:`fashionseg.benchmarks.inference`).

For each setting (precision, memory layout, compile mode, batch size):

* agreement: the fraction of the split's pixels (or of its first
  ``agreement_images`` images') labelled as eager fp32 (TF32 off) labels
  them; a setting under
  :data:`~fashionseg.inference.segmenter.AGREEMENT_BAR` is reported but not
  chosen as the best;
* model only: batches already decoded and on the device, to labels on
  the device;
* end to end: JPEG bytes in memory, decoded by threads on the host (or,
  with ``decode=device``, in one batch on the device), to labels on the
  host, with one batch in flight (:meth:`Segmenter.stream`); and, for
  the best setting with CRF parameters, to CRF-refined labels (the
  PyTorch CRF in memory on the same device).

A ``decode=device`` setting's agreement is over images decoded on the
device, against eager fp32's labels of the host-decoded ones.

Each is timed over ``batches`` batches after ``warmup`` untimed ones,
with device events on a GPU; the end-to-end rows of a split of photos of
several sizes warm up over one pass of the split at least, where a new
input shape costs an autotuning or a compilation (on a GPU, or compiled),
so that no new shape appears in the timed window. Every phase shows a
progress bar with its estimated time on stderr. Each row also says what
fraction of the GPU's
peak arithmetic at its precision its rates use (the network's operations
per image counted once, at the size the model-only rows time).
"""
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence

import mmcv
import torch
from mmengine.config import Config
from PIL import Image
from tqdm import tqdm

from fashionseg.benchmarks.arithmetic import (count_flops, fraction_of_peak,
                                              peak_tflops)
from fashionseg.benchmarks.timing import peak_memory, time_batches
from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import CRFParams
from fashionseg.dataset_folder import (image_path, read_dataset_meta,
                                       split_stems)
from fashionseg.inference.jpeg_decoding import check_device_decoding
from fashionseg.inference.photos import refine_predictions
from fashionseg.inference.segmenter import (Segmenter, build_model,
                                            label_agreement,
                                            test_pipeline_for_arrays)
from fashionseg.inference.settings import AGREEMENT_BAR, InferenceSettings
from fashionseg.utils.device import (device_name, release_memory,
                                     torch_device_of)


def decode_threads() -> int:
    """Threads that decode JPEGs for the end-to-end rows: the cores this
    process may use, less two for the thread that drives the device and
    the rest of the process, between 2 and 16 (recorded); OpenCV releases
    the interpreter lock while it decodes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(2, min(16, cores - 2))


def _labels(segmenter: Segmenter, images: Sequence, jpegs: Sequence[bytes],
            desc: str) -> List[torch.Tensor]:
    """Labels on the host of the decoded ``images``, or with
    ``decode=device`` of their ``jpegs`` decoded on the device, through
    the path the end-to-end rows time (:meth:`Segmenter.stream`)."""
    step = segmenter.settings.batch_size

    def batches():
        for start in range(0, len(images), step):
            end = min(start + step, len(images))
            yield segmenter.decode(jpegs[start:end]) \
                if segmenter.settings.decode == 'device' \
                else segmenter.prepare_batch(images[start:end])

    labels = []
    with tqdm(total=len(images), desc=desc, unit='img',
              leave=False) as progress:
        for predictions in segmenter.stream(batches()):
            # Copies: a view would keep its whole (pinned) batch.
            labels += [p.labels.clone() for p in predictions]
            progress.update(len(predictions))
    return labels


def benchmark_engine(config: str, checkpoint: str, data_root: Path,
                     settings: Sequence[InferenceSettings],
                     split: str = 'test', device: str = 'cpu',
                     batches: int = 100, warmup: int = 3,
                     crf_params: Optional[CRFParams] = None,
                     agreement_images: Optional[int] = None) -> dict:
    """The engine's rows of the throughput table (see the module
    docstring); ``agreement_images`` bounds the agreement set to the
    split's first images (all of them by default)."""
    if agreement_images is not None and agreement_images < 1:
        raise ValueError('agreement_images must be at least 1, not '
                         f'{agreement_images}')
    jpegs = _split_jpegs(data_root, split)
    images = [mmcv.imfrombytes(data) for data in jpegs]
    checked = images[:agreement_images]
    cfg = Config.fromfile(config)
    torch_device = torch_device_of(device)
    if any(setting.decode == 'device' for setting in settings):
        # Before any row: a setting that cannot run stops the benchmark
        # at once, not after the rows before it.
        check_device_decoding(torch_device, test_pipeline_for_arrays(cfg))
    reference = Segmenter(build_model(cfg, checkpoint, torch_device), cfg,
                          InferenceSettings(), torch_device)
    reference_labels = _labels(reference, checked, jpegs,
                               'agreement: eager fp32 labels')
    counts = torch.bincount(torch.cat(
        [labels.flatten() for labels in reference_labels]).long())
    flops, flop_size = _flops_per_image(reference, images)
    sizes = {tuple(image.shape[:2]) for image in images}
    name_of_device = device_name(torch_device)

    def of_peak(rate: float, precision: str) -> Optional[float]:
        fraction = fraction_of_peak(rate, flops, name_of_device, precision)
        return None if fraction is None else round(fraction, 4)

    rows = []
    threads = decode_threads()
    pool = ThreadPoolExecutor(threads)
    for setting in settings:
        # Each row's peak from what is resident before it (the reference
        # and its labels), not the previous row's model and buffers.
        segmenter = None
        release_memory(torch_device)
        segmenter = Segmenter(build_model(cfg, checkpoint, torch_device),
                              cfg, setting, torch_device)
        name = setting.name()
        agreement = label_agreement(
            reference_labels,
            _labels(segmenter, checked, jpegs, f'agreement: {name}'),
            other_shapes_disagree=setting.decode == 'device')
        model_only = _model_only(segmenter, images, batches, warmup,
                                 torch_device, f'{name}: model only')
        e2e_warmup = end_to_end_warmup(setting, len(sizes), len(images),
                                       warmup, torch_device)
        end_to_end = _end_to_end(segmenter, jpegs, pool, batches,
                                 e2e_warmup, torch_device,
                                 desc=f'{name}: end to end')
        rows.append(dict(
            setting.as_dict(), name=name, agreement=agreement,
            agrees=agreement >= AGREEMENT_BAR,
            model_images_per_s=model_only,
            end_to_end_images_per_s=end_to_end,
            end_to_end_warmup_batches=e2e_warmup,
            peak_tflops=peak_tflops(name_of_device, setting.precision),
            fraction_of_peak_model_only=of_peak(model_only,
                                                setting.precision),
            fraction_of_peak_end_to_end=of_peak(end_to_end,
                                                setting.precision),
            peak_memory_mib=peak_memory(torch_device)[0]))
    record = dict(config=config, checkpoint=checkpoint, split=split,
                  device=torch_device, device_name=name_of_device,
                  # The network's operations per image (two per
                  # multiply-add), at the size the model-only rows time
                  # (before the model's padding).
                  gflop_per_image=round(flops / 1e9, 2),
                  gflop_image_size=flop_size,
                  split_images=len(images),
                  agreement_images=len(checked),
                  # How much the agreement can say: a model that labels
                  # nearly every pixel alike agrees with anything close.
                  reference_outside_most_common_label=float(
                      1 - counts.max() / counts.sum()),
                  batches=batches, warmup_batches=warmup,
                  decode_threads=threads,
                  # The process's cuDNN policy, the same for every row.
                  cudnn_benchmark=torch.backends.cudnn.benchmark,
                  agreement_bar=AGREEMENT_BAR, settings=rows, best=None)
    best = best_row(rows)
    segmenter = reference = None
    if best is not None:
        record['best'] = best['name']
        if crf_params is not None:
            release_memory(torch_device)
            record.update(crf=crf_params.as_dict(),
                          end_to_end_with_crf_images_per_s=_with_crf(
                              cfg, checkpoint, InferenceSettings.from_dict(
                                  best), jpegs, pool, batches, warmup,
                              torch_device, crf_params))
    pool.shutdown()
    return record


def benchmark_engine_with_crf(config: str, checkpoint: str,
                              data_root: Path, setting: InferenceSettings,
                              crf_params: CRFParams, split: str = 'test',
                              device: str = 'cpu', batches: int = 100,
                              warmup: int = 3) -> float:
    """Images per second of one setting end to end with the PyTorch CRF
    (JPEG bytes to CRF-refined labels on the host): the row
    :func:`benchmark_engine` adds for its best setting, alone, for a
    setting whose other rows were measured already (the gpu-check)."""
    jpegs = _split_jpegs(data_root, split)
    with ThreadPoolExecutor(decode_threads()) as pool:
        return _with_crf(Config.fromfile(config), checkpoint, setting,
                         jpegs, pool, batches, warmup,
                         torch_device_of(device), crf_params)


def _with_crf(cfg: Config, checkpoint: str, setting: InferenceSettings,
              jpegs: Sequence[bytes], pool: ThreadPoolExecutor,
              batches: int, warmup: int, device: str,
              crf_params: CRFParams) -> float:
    segmenter = Segmenter(build_model(cfg, checkpoint, device), cfg,
                          setting, device)
    return _end_to_end(segmenter, jpegs, pool, batches, end_to_end_warmup(
        setting, len(_photo_sizes(jpegs)), len(jpegs), warmup, device),
        device, crf_params, f'{setting.name()}: end to end with CRF')


def end_to_end_warmup(setting: InferenceSettings, sizes: int,
                      images: int, warmup: int, device: str) -> int:
    """The warm-up batches of an end-to-end row over a split of ``images``
    photos of ``sizes`` different sizes: ``warmup``, or one pass of the
    cycled split where there are several sizes and each new shape is
    autotuned (cuDNN on a GPU) or compiled."""
    tuned = torch.device(device).type == 'cuda' or setting.compile != 'none'
    if sizes < 2 or not tuned:
        return warmup
    return max(warmup, -(-images // setting.batch_size))


def _photo_sizes(jpegs: Sequence[bytes]) -> set:
    """The (height, width) of each JPEG, read from its header."""
    sizes = set()
    for data in jpegs:
        with Image.open(io.BytesIO(data)) as image:
            sizes.add(image.size[::-1])
    return sizes


def _split_jpegs(data_root: Path, split: str) -> List[bytes]:
    """The JPEG bytes of a converted split's photos, in its order."""
    data_root = Path(data_root)
    read_dataset_meta(data_root)
    stems = split_stems(data_root, split)
    if not stems:
        raise ValueError(f'{data_root}: the {split} split has no images')
    return [image_path(data_root, split, stem).read_bytes()
            for stem in stems]


def best_row(rows: Sequence[dict]) -> Optional[dict]:
    """The row the tables use, among those that agree with eager fp32:
    the fastest model only, and of the rows that differ from it only in
    their JPEG decoder (whose model-only rates measure the same path),
    the fastest end to end; None where no row agrees."""
    passing = [row for row in rows if row.get('agrees')]
    if not passing:
        return None

    def model_path(row):
        return replace(InferenceSettings.from_dict(row), decode='host')
    fastest = max(passing, key=lambda row: row['model_images_per_s'])
    return max((row for row in passing
                if model_path(row) == model_path(fastest)),
               key=lambda row: row['end_to_end_images_per_s'])


def _common_size_batch(segmenter: Segmenter, images: Sequence, size: int,
                       device: str):
    """``size`` prepared images of the split's most common padded size
    (cycled), on the device, and their metas."""
    prepared = [segmenter.prepare(image) for image in images]
    shapes = [tuple(p['inputs'].shape) for p in prepared]
    common = max(set(shapes), key=shapes.count)
    same = [p for p in prepared if tuple(p['inputs'].shape) == common]
    chosen = [same[i % len(same)] for i in range(size)]
    return ([p['inputs'].to(device) for p in chosen],
            [p['data_samples'].metainfo for p in chosen])


def _flops_per_image(reference: Segmenter, images: Sequence):
    """The operations of one image's forward pass (the eager fp32
    reference, one image of the split's most common padded size), and
    that image's size (height, width) before the model pads it."""
    inputs, metas = _common_size_batch(reference, images, 1,
                                       reference.device)
    return (count_flops(lambda: reference.predict(inputs, metas)),
            list(inputs[0].shape[-2:]))


def _model_only(segmenter: Segmenter, images: Sequence, batches: int,
                warmup: int, device: str, desc: Optional[str] = None
                ) -> float:
    # One batch of the split's most common size, resident on the device.
    inputs, metas = _common_size_batch(
        segmenter, images, segmenter.settings.batch_size, device)

    def step(index: int) -> int:
        segmenter.predict(inputs, metas)
        return len(inputs)

    return time_batches(step, batches, warmup, device, desc)


def decodes_ahead(device: str) -> bool:
    """Whether the end-to-end rows decode the next batch beside the
    model's work: on a GPU, not on the CPU (:func:`_end_to_end`)."""
    return torch.device(device).type != 'cpu'


def _end_to_end(segmenter: Segmenter, jpegs: Sequence[bytes],
                pool: ThreadPoolExecutor, batches: int, warmup: int,
                device: str, crf_params: Optional[CRFParams] = None,
                desc: Optional[str] = None) -> float:
    size = segmenter.settings.batch_size
    crf_backend = CRFBackend.choose('torch', torch.device(device).type)

    def load(data: bytes):
        image = mmcv.imfrombytes(data)
        # (The engine assembles the batch in pinned memory itself.)
        prepared = segmenter.prepare(image)
        rgb = image[:, :, ::-1].copy() if crf_params is not None else None
        return prepared, rgb

    def batch_of(index: int):
        start = index * size
        return [jpegs[(start + i) % len(jpegs)] for i in range(size)]

    if segmenter.settings.decode == 'device':
        def next_batch(index: int):
            inputs, metas = segmenter.decode(batch_of(index))
            # The CRF's pairwise terms read the photo (RGB, on the host):
            # the decoded image itself, which no pipeline step changed.
            rgb = [image.flip(0).permute(1, 2, 0).cpu().numpy()
                   for image in inputs] if crf_params is not None else None
            return inputs, metas, rgb
    else:
        # On a GPU, decode the next batch while the device works on this
        # one, within the warm-up or the timed batches: the timed window
        # decodes every batch it counts, and nothing beyond. On the CPU
        # the model's threads already use every core: decoding beside
        # them halved the end-to-end rate on 2 cores (the threads wait
        # for each other at every parallel region), so it decodes between
        # batches, in this thread.
        pending = {}
        ahead = decodes_ahead(device)

        def next_batch(index: int):
            if not ahead:
                loaded = [load(data) for data in batch_of(index)]
            else:
                loaded = list(pending.pop(index, None) or
                              pool.map(load, batch_of(index)))
                if index + 1 not in (warmup, warmup + batches):
                    pending[index + 1] = pool.map(load, batch_of(index + 1))
            prepared = [p for p, _ in loaded]
            return ([p['inputs'] for p in prepared],
                    [p['data_samples'].metainfo for p in prepared],
                    [rgb for _, rgb in loaded])

    if crf_params is None:
        # The labels come to the host with one batch in flight: one
        # stream for the warm-up batches, one for the timed ones (filled
        # and drained within the timed window).
        streams = {}

        def step(index: int) -> int:
            first, count = (0, warmup) if index < warmup else (warmup,
                                                               batches)
            if first not in streams:
                streams[first] = segmenter.stream(
                    next_batch(i)[:2] for i in range(first, first + count))
            return len(next(streams[first]))
    else:
        def step(index: int) -> int:
            inputs, metas, rgb = next_batch(index)
            predictions = segmenter.predict(inputs, metas, True)
            refine_predictions(predictions, metas, rgb, crf_params,
                               crf_backend)
            return len(inputs)

    return time_batches(step, batches, warmup, device, desc)
