"""The dense CRF of :mod:`fashionseg.crf.energy` in PyTorch: the same model as
pydensecrf, for a batch of images at once, on the CPU or a GPU.

Same energy as :func:`fashionseg.crf.pydensecrf_backend.dense_crf` (paper
sections 2 and 4.2): unary
-log softmax of the scores, a smoothness kernel on (x, y) / 3 with Potts
weight 3, an appearance kernel on (x, y) / theta_alpha and (r, g, b) /
theta_beta with Potts weight w1, each kernel normalised symmetrically,
10 mean-field iterations. The Gaussian filtering is the permutohedral lattice
(:mod:`fashionseg.crf.lattice`), built as Krähenbühl's code builds it, so
that the labels agree with pydensecrf's up to floating-point summation
order.

A batch is the concatenation of its images' pixels: one lattice holds all
of them, with the image index as an extra lattice coordinate so that no two
images share a vertex. Images of any sizes, and a different parameter set
per image, go in one call.
"""
import functools
from typing import List, Sequence

import numpy as np
import torch

from fashionseg.crf.energy import (MEAN_FIELD_ITERATIONS, SMOOTHNESS_COMPAT,
                                   SMOOTHNESS_SXY, CRFParams)
from fashionseg.crf.lattice import PermutohedralLattice, blur, csr_matrix


class _Kernel:
    """One symmetrically normalised Gaussian kernel with its Potts weight,
    weight * D^-1/2 L D^-1/2 q, where L is the lattice filter
    and D = L 1 (Krähenbühl's NORMALIZE_SYMMETRIC). The normalisation and
    the weight are folded into the splatting and slicing matrices once."""

    def __init__(self, features: torch.Tensor, segment: torch.Tensor,
                 weight: torch.Tensor):
        lattice = PermutohedralLattice(features, segment)
        ones = torch.ones(len(features), 1, device=features.device)
        norm = 1.0 / torch.sqrt(lattice.compute(ones) + 1e-20)
        self.blur_steps = lattice.blur_steps
        self.splat = _scale_columns(lattice.splat, norm[:, 0])
        self.slice = _scale_rows(lattice.slice, (norm * weight)[:, 0])


class _Messages:
    """Both kernels' messages to every pixel in one pass: their splatting
    matrices stacked (one product reads q once), their blurs block by
    block on the stacked vertices (the smoothness lattice, with fewer
    axes, left as it is in the appearance lattice's last steps), their
    slicing matrices side by side (one product, added to the unary by
    ``addmm``, writes the message once). Mean field is bound by moving q
    through memory; this keeps it to a read, a write and the softmax per
    iteration."""

    def __init__(self, kernels: Sequence[_Kernel]):
        index = _index_dtype(kernels)
        self.splat = _stack_rows([k.splat for k in kernels], index)
        self.slice = _side_by_side([k.slice for k in kernels], index)
        steps = max(len(k.blur_steps) for k in kernels)
        self.blur_steps = [
            _block_diagonal([k.blur_steps[i] if i < len(k.blur_steps)
                             else _identity(k.splat.shape[0], index,
                                            k.splat.device)
                             for k in kernels], index)
            for i in range(steps)]

    def compute(self, log_q0: torch.Tensor, q: torch.Tensor,
                out: torch.Tensor) -> torch.Tensor:
        """``out`` = ``log_q0`` + every kernel applied to ``q``."""
        return torch.addmm(log_q0, self.slice,
                           blur(self.splat @ q, self.blur_steps), out=out)


def _index_dtype(kernels: Sequence[_Kernel]) -> torch.dtype:
    """int32 indices where every kernel has them and the stacked matrices'
    entries and columns fit (as :meth:`PermutohedralLattice._build_matrices`
    chooses)."""
    slice_entries = sum(k.slice.values().numel() for k in kernels)
    # A blur step: at most 3 entries per vertex (column of the slice).
    blur_entries = 3 * sum(k.slice.shape[1] for k in kernels)
    narrow = all(k.slice.col_indices().dtype == torch.int32
                 for k in kernels)
    return torch.int32 if narrow and max(slice_entries,
                                         blur_entries) < 2**31 \
        else torch.long


def _stack_rows(matrices: Sequence[torch.Tensor], index: torch.dtype
                ) -> torch.Tensor:
    """CSR matrices of the same width, one above the other."""
    crows, offset = [], 0
    for matrix in matrices:
        crows.append(matrix.crow_indices()[:-1].to(index) + offset)
        offset += matrix.values().numel()
    crows.append(torch.tensor([offset], dtype=index,
                              device=matrices[0].device))
    return csr_matrix(
        torch.cat(crows),
        torch.cat([m.col_indices().to(index) for m in matrices]),
        torch.cat([m.values() for m in matrices]),
        (sum(m.shape[0] for m in matrices), matrices[0].shape[1]))


def _block_diagonal(matrices: Sequence[torch.Tensor], index: torch.dtype
                    ) -> torch.Tensor:
    """Square CSR matrices along the diagonal of one."""
    stacked = _stack_rows(matrices, index)
    offsets = torch.cat([torch.full((m.values().numel(),), offset,
                                    dtype=index, device=m.device)
                         for m, offset in zip(matrices, _starts(matrices))])
    size = sum(m.shape[0] for m in matrices)
    return csr_matrix(stacked.crow_indices(),
                      stacked.col_indices() + offsets,
                      stacked.values(), (size, size))


def _starts(matrices: Sequence[torch.Tensor]) -> List[int]:
    starts = [0]
    for matrix in matrices[:-1]:
        starts.append(starts[-1] + matrix.shape[0])
    return starts


def _identity(size: int, index: torch.dtype, device) -> torch.Tensor:
    return csr_matrix(
        torch.arange(size + 1, dtype=index, device=device),
        torch.arange(size, dtype=index, device=device),
        torch.ones(size, device=device), (size, size))


def _side_by_side(matrices: Sequence[torch.Tensor], index: torch.dtype
                  ) -> torch.Tensor:
    """CSR matrices of the same height, each with the same number of
    entries in every row (a lattice's d + 1), left to right; each row's
    columns stay in increasing order."""
    rows = matrices[0].shape[0]
    columns, values, offset = [], [], 0
    for matrix in matrices:
        width = matrix.values().numel() // rows if rows else 0
        columns.append(matrix.col_indices().to(index).reshape(rows, width)
                       + offset)
        values.append(matrix.values().reshape(rows, width))
        offset += matrix.shape[1]
    per_row = sum(c.shape[1] for c in columns)
    return csr_matrix(
        torch.arange(rows + 1, dtype=index, device=matrices[0].device)
        * per_row,
        torch.cat(columns, 1).reshape(-1), torch.cat(values, 1).reshape(-1),
        (rows, offset))


def _scale_rows(matrix: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """diag(scale) @ matrix, for a CSR matrix."""
    counts = matrix.crow_indices().diff().long()
    values = matrix.values() * scale.repeat_interleave(counts)
    return csr_matrix(matrix.crow_indices(),
                      matrix.col_indices(), values,
                      matrix.shape)


def _scale_columns(matrix: torch.Tensor, scale: torch.Tensor
                   ) -> torch.Tensor:
    """matrix @ diag(scale), for a CSR matrix."""
    values = matrix.values() * scale[matrix.col_indices().long()]
    return csr_matrix(matrix.crow_indices(),
                      matrix.col_indices(), values,
                      matrix.shape)


@functools.lru_cache(maxsize=2)
def _smoothness_kernel(shapes: tuple, device: str) -> _Kernel:
    """The smoothness kernel depends only on the images' sizes: built once
    for a batch layout and reused (a dataset's images mostly share one
    size)."""
    grids = [_pixel_grid(h, w, device) / SMOOTHNESS_SXY for h, w in shapes]
    segment = torch.cat([torch.full((h * w,), i, dtype=torch.long,
                                    device=device)
                         for i, (h, w) in enumerate(shapes)])
    features = torch.cat(grids)
    weight = torch.full((len(features), 1), float(SMOOTHNESS_COMPAT),
                        device=device)
    return _Kernel(features, segment, weight)


def _pixel_grid(height: int, width: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device),
                            torch.arange(width, device=device),
                            indexing='ij')
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float()


def dense_crf_batch(images: Sequence[np.ndarray],
                    log_probs: Sequence, params: Sequence[CRFParams],
                    device: str = 'cpu',
                    iterations: int = MEAN_FIELD_ITERATIONS,
                    as_tensors: bool = False) -> List:
    """Refine a batch of labellings; image ``i`` (H x W x 3 uint8, numpy
    or tensor) with its log probabilities (C x H x W, numpy or tensor)
    and ``params[i]``. Returns H x W uint8 label maps, one per image
    (numpy, or tensors on ``device`` with ``as_tensors``); inputs already
    on ``device`` are not copied."""
    if not (len(images) == len(log_probs) == len(params)):
        raise ValueError('images, log_probs and params differ in length')
    if not images:
        return []
    unaries, appear, weights, segments, shapes = [], [], [], [], []
    num_classes = None
    for index, (image, probs, p) in enumerate(zip(images, log_probs,
                                                  params)):
        probs = torch.as_tensor(probs, dtype=torch.float32).to(device)
        classes, height, width = probs.shape
        if num_classes is None:
            num_classes = classes
        if classes != num_classes:
            raise ValueError(f'image {index} has {classes} classes, the '
                             f'first one {num_classes}')
        if tuple(image.shape[:2]) != (height, width):
            raise ValueError(f'image {index} is {image.shape[:2]} but its '
                             f'scores are {(height, width)}')
        grid = _pixel_grid(height, width, device)
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.ascontiguousarray(image))
        colour = image.to(device).reshape(-1, 3).float()
        unaries.append(probs.reshape(classes, -1).t())
        appear.append(torch.cat([grid / p.theta_alpha,
                                 colour / p.theta_beta], 1))
        weights.append(torch.full((height * width, 1), float(p.w1),
                                  device=device))
        segments.append(torch.full((height * width,), index,
                                   dtype=torch.long, device=device))
        shapes.append((height, width))
    log_q0 = torch.cat(unaries)  # -unary
    segment = torch.cat(segments)
    messages = _Messages([
        _smoothness_kernel(tuple(shapes), str(device)),
        _Kernel(torch.cat(appear), segment, torch.cat(weights))])
    q = torch.softmax(log_q0, 1)
    message = torch.empty_like(log_q0)
    for _ in range(iterations):
        q = torch.softmax(messages.compute(log_q0, q, out=message), 1)
    labels = q.argmax(1).to(torch.uint8)
    if not as_tensors:
        labels = labels.cpu().numpy()
    out, start = [], 0
    for height, width in shapes:
        out.append(labels[start:start + height * width].reshape(height,
                                                                width))
        start += height * width
    return out


def dense_crf_torch(image: np.ndarray, log_probs, params: CRFParams,
                    device: str = 'cpu',
                    iterations: int = MEAN_FIELD_ITERATIONS) -> np.ndarray:
    """One image; the same result as
    :func:`fashionseg.crf.pydensecrf_backend.dense_crf`."""
    return dense_crf_batch([image], [log_probs], [params], device,
                           iterations)[0]
