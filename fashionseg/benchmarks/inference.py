"""Throughput of a trained model without and with the dense CRF (paper
section 5: 1.95 images/s without, 0.20 with, on a V100).

Each test image goes through MMSegmentation's ``inference_model`` (reading
the photo, the test pipeline, the forward pass and upsampling to the image)
at batch size 1; with the CRF, the searched parameters then refine the
labelling (:func:`fashionseg.crf.pydensecrf_backend.dense_crf`, one core,
as pydensecrf runs).
The first images warm up and are not timed.
"""
import time
from pathlib import Path
from typing import Optional

import cv2
import torch
from mmengine.config import Config
from mmseg.apis import inference_model
from tqdm import tqdm

from fashionseg.benchmarks.timing import peak_memory
from fashionseg.crf.energy import CRFParams
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.dataset_folder import (image_path, read_dataset_meta,
                                       split_stems)
from fashionseg.inference.segmenter import build_model
from fashionseg.utils.device import (device_name, release_memory, synchronize,
                                     torch_device_of)
from fashionseg.utils.environment import collect_environment

WARMUP_IMAGES = 2


def benchmark_inference(config: str, checkpoint: str, data_root: Path,
                        split: str = 'test', images: int = 50,
                        device: str = 'cpu',
                        crf_params: Optional[CRFParams] = None) -> dict:
    """Time ``images`` images of ``split`` (after the warm-up ones)."""
    data_root = Path(data_root)
    read_dataset_meta(data_root)  # a clear error for a missing dataset
    paths = [image_path(data_root, split, stem)
             for stem in split_stems(data_root, split)]
    if not paths:
        raise ValueError(f'{data_root}: the {split} split has no images')
    torch_device = torch_device_of(device)
    # The weights loaded strictly (the engine's builder), then
    # MMSegmentation's own inference path as the paper's protocol.
    model = build_model(Config.fromfile(config), checkpoint, torch_device)
    release_memory(torch_device)
    # Cycle through the split when it has fewer images than asked for.
    order = [paths[i % len(paths)] for i in range(WARMUP_IMAGES + images)]
    model_seconds = crf_seconds = 0.0
    desc = 'paper protocol' + (' with CRF' if crf_params else '')
    for index, path in enumerate(tqdm(order, desc=desc, unit='img',
                                      leave=False)):
        synchronize(torch_device)
        start = time.perf_counter()
        result = inference_model(model, str(path))
        synchronize(torch_device)
        elapsed = time.perf_counter() - start
        crf_elapsed = 0.0
        if crf_params is not None:
            start = time.perf_counter()
            log_probs = torch.log_softmax(
                result.seg_logits.data.float(), dim=0).cpu().numpy()
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            dense_crf(image, log_probs, crf_params)
            crf_elapsed = time.perf_counter() - start
        if index >= WARMUP_IMAGES:
            model_seconds += elapsed
            crf_seconds += crf_elapsed
    peak, peak_kind = peak_memory(torch_device)
    record = dict(
        config=config, checkpoint=checkpoint, data_root=str(data_root),
        split=split, images=images, warmup_images=WARMUP_IMAGES,
        model=Path(config).stem, device=torch_device,
        device_name=device_name(torch_device),
        parameters=int(sum(p.numel() for p in model.parameters())),
        images_per_s=images / model_seconds,
        seconds_per_image=model_seconds / images,
        peak_memory_mib=peak, peak_memory_kind=peak_kind,
        environment=collect_environment())
    if crf_params is not None:
        record.update(
            crf=crf_params.as_dict(),
            crf_seconds_per_image=crf_seconds / images,
            images_per_s_with_crf=images / (model_seconds + crf_seconds))
    return record
