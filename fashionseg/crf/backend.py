"""Where the dense CRF runs, chosen once: pydensecrf on the CPU's cores or
the PyTorch backend on a device (:class:`CRFBackend`), for a split's items
(:func:`fashionseg.crf.refine.run_tasks`) and for images in memory
(:meth:`CRFBackend.refine_images`, the photo tool and the benchmarks)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from fashionseg.crf.energy import CRFParams
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.crf.torch_backend import dense_crf_batch
from fashionseg.errors import UsageError

BACKEND_NAMES = ('auto', 'pydensecrf', 'torch')


@dataclass(frozen=True)
class CRFBackend:
    """Where the CRF runs: ``pydensecrf`` in a pool of ``workers``
    processes (all cores by default), or ``torch``
    (:mod:`fashionseg.crf.torch_backend`) on ``device``, ``batch_size``
    images per
    call. Both give the same labels (to floating-point summation order)."""
    name: str = 'pydensecrf'
    workers: Optional[int] = None
    device: str = 'cpu'
    batch_size: int = 1
    # At most this many pixels per torch-backend call (the lattice's
    # vertices and memory grow with them), whatever batch_size allows.
    max_pixels: int = 16 * 600 * 400

    @classmethod
    def choose(cls, name: str = 'auto', device: Optional[str] = None,
               workers: Optional[int] = None,
               batch_size: Optional[int] = None):
        """``auto``: the torch backend on the GPU when there is one, else
        pydensecrf on all cores."""
        if name not in BACKEND_NAMES:
            raise UsageError(f'unknown CRF backend {name!r}; one of '
                             f'{", ".join(BACKEND_NAMES)}')
        if device not in (None, 'cpu', 'cuda'):
            raise UsageError(f'unknown device {device!r}')
        if device == 'cuda' and not torch.cuda.is_available():
            raise UsageError('--device cuda, but torch sees no CUDA GPU')
        if name == 'auto':
            name = 'torch' if (device == 'cuda' or (
                device is None and torch.cuda.is_available())) \
                else 'pydensecrf'
        if device is None:
            device = 'cuda' if name == 'torch' and \
                torch.cuda.is_available() else 'cpu'
        if batch_size is None:
            # Batches pay on a GPU; on the CPU one image at a time is
            # fastest (tools/benchmark_crf.py speed).
            batch_size = 16 if device == 'cuda' else 1
        return cls(name, workers, device, batch_size)

    def describe(self) -> dict:
        """What a result records: the backend, and the torch backend's
        device (not the process or batch count, which do not change the
        labels)."""
        if self.name == 'pydensecrf':
            return dict(backend=self.name)
        return dict(backend=self.name, device=self.device)

    def starts_new_call(self, count: int, pixels: int, size: int) -> bool:
        """Whether an image of ``size`` pixels goes to a new torch-backend
        call after ``count`` images of ``pixels`` pixels in all: at most
        ``batch_size`` images and ``max_pixels`` pixels per call (one image
        alone may exceed it)."""
        return count > 0 and (count == self.batch_size
                              or pixels + size > self.max_pixels)

    def refine_images(self, images_rgb: Sequence[np.ndarray],
                      log_probs: Sequence[torch.Tensor],
                      params: CRFParams) -> List[np.ndarray]:
        """Label maps of images held in memory (RGB, with their log
        probabilities at image size, on any device): the torch backend on
        its device, in calls of at most ``batch_size`` images and
        ``max_pixels`` pixels, or pydensecrf one image after another in
        this process."""
        if self.name != 'torch':
            return [dense_crf(image, probs.cpu().numpy(), params)
                    for image, probs in zip(images_rgb, log_probs)]

        def call(start: int, end: int) -> List[np.ndarray]:
            return dense_crf_batch(images_rgb[start:end], log_probs[start:end],
                                   [params] * (end - start), str(self.device))

        labels, start, pixels = [], 0, 0
        for end, probs in enumerate(log_probs):
            size = probs.shape[-2] * probs.shape[-1]
            if self.starts_new_call(end - start, pixels, size):
                labels += call(start, end)
                start, pixels = end, 0
            pixels += size
        if start < len(log_probs):
            labels += call(start, len(log_probs))
        return labels
