"""The dense CRF of :mod:`fashionseg.crf.energy` in PyTorch: the same model as
pydensecrf, for a batch of images at once, on the CPU or a GPU.

Same energy as :func:`fashionseg.crf.pydensecrf_backend.dense_crf` (paper
sections 2 and 4.2): unary
-log softmax of the scores, a smoothness kernel on (x, y) / 3 with Potts
weight 3, an appearance kernel on (x, y) / theta_alpha and (r, g, b) /
theta_beta with Potts weight w1, each kernel normalised symmetrically,
10 mean-field iterations. The Gaussian filtering is the permutohedral lattice
of Adams et al. (2010) exactly as Krähenbühl's code (which pydensecrf wraps)
builds it: the same elevation, rounding, barycentric weights, [1/2 1 1/2]
blur along the d + 1 lattice axes and final scaling, so that the labels
agree with pydensecrf's up to floating-point summation order.

A batch is the concatenation of its images' pixels: one lattice holds all
of them, with the image index as an extra lattice coordinate so that no two
images share a vertex. Images of any sizes, and a different parameter set
per image, go in one call.

The module is longer than most (about 320 lines) because the lattice and
the mean-field loop that uses it are one algorithm, kept beside each other
so that each step can be read against Krähenbühl's code.
"""
import functools
import math
from typing import List, Sequence

import numpy as np
import torch

from fashionseg.crf.energy import (MEAN_FIELD_ITERATIONS, SMOOTHNESS_COMPAT,
                                   SMOOTHNESS_SXY, CRFParams)

_CODE_LIMIT = 2**62


class PermutohedralLattice:
    """Gaussian filtering of values at points with features ``features``
    (N x d, already divided by the kernel widths); ``segment`` (N) keeps
    points of different images apart."""

    def __init__(self, features: torch.Tensor, segment: torch.Tensor):
        device = features.device
        n, d = features.shape
        features = features.float()
        # Elevate onto the hyperplane (Adams et al. 2010, p. 5), summing in
        # the same order as the C++ code.
        inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
        scale = torch.tensor(
            [inv_std / math.sqrt((i + 2) * (i + 1)) for i in range(d)],
            dtype=torch.float32, device=device)
        cf = features * scale
        suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])
        elevated = torch.empty(n, d + 1, device=device)
        elevated[:, 0] = suffix[:, 0]
        index = torch.arange(1, d + 1, device=device, dtype=torch.float32)
        after = torch.cat([suffix[:, 1:], torch.zeros(n, 1, device=device)],
                          1)
        elevated[:, 1:] = after - index * cf
        # The closest remainder-0 point, by rounding each coordinate to a
        # multiple of d + 1.
        down = torch.tensor(1.0 / (d + 1), dtype=torch.float32)
        v = elevated * down.to(device)
        up_value = torch.ceil(v) * (d + 1)
        down_value = torch.floor(v) * (d + 1)
        rem0 = torch.where(up_value - elevated < elevated - down_value,
                           up_value, down_value).long()
        total = torch.div(rem0, d + 1, rounding_mode='floor').sum(1)
        # The rank of each coordinate's residual (ties as the C++ loop).
        diff = elevated - rem0.float()
        later = torch.arange(d + 1, device=device)
        is_later = later[None, :] > later[:, None]  # [i, j]: j > i
        # rank[m] = #{j > m: diff_j > diff_m} + #{i < m: diff_i >= diff_m}
        # greater[m, j]: diff_j > diff_m
        greater = diff[:, None, :] > diff[:, :, None]
        earlier_ge = (diff[:, :, None] >= diff[:, None, :]) & \
            is_later[None]  # [i, m]: i < m and diff_i >= diff_m
        rank = (greater & is_later).sum(2) + earlier_ge.sum(1)
        rank = rank + total[:, None]
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d + 1, torch.where(high, rank - d - 1,
                                                          rank))
        rem0 = torch.where(low, rem0 + d + 1, torch.where(high, rem0 - d - 1,
                                                          rem0))
        # Barycentric coordinates (p. 10).
        residual = (elevated - rem0.float()) * down.to(device)
        bary = torch.zeros(n, d + 2, device=device)
        bary.scatter_add_(1, d - rank, residual)
        bary.scatter_add_(1, d - rank + 1, -residual)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weights = bary[:, :d + 1]
        # The d + 1 vertices of each point's simplex: key = rem0 + the
        # canonical simplex's vertex `remainder`, permuted by rank.
        remainder = torch.arange(d + 1, device=device)[None, :, None]
        keys = rem0[:, None, :d] + remainder - (d + 1) * (
            rank[:, None, :d] > d - remainder).long()  # N x (d+1) x d
        self._encode_setup(keys, segment, d)
        codes = self._encode(keys, segment[:, None].expand(-1, d + 1))
        vertex_codes, offsets = torch.unique(codes.reshape(-1),
                                             return_inverse=True)
        self.num_vertices = len(vertex_codes)
        self.offsets = offsets.reshape(n, d + 1)
        vertex_keys = torch.empty(self.num_vertices, d, dtype=torch.long,
                                  device=device)
        vertex_keys[self.offsets.reshape(-1)] = keys.reshape(-1, d)
        vertex_segment = torch.empty(self.num_vertices, dtype=torch.long,
                                     device=device)
        vertex_segment[self.offsets.reshape(-1)] = segment[:, None].expand(
            -1, d + 1).reshape(-1)
        # Blur neighbours along each of the d + 1 lattice axes; a missing
        # neighbour points at row 0, which stays zero.
        self.neighbours = []
        for axis in range(d + 1):
            n1 = vertex_keys - 1
            n2 = vertex_keys + 1
            if axis < d:
                n1[:, axis] = vertex_keys[:, axis] + d
                n2[:, axis] = vertex_keys[:, axis] - d
            pair = []
            for neighbour in (n1, n2):
                code = self._encode(neighbour, vertex_segment)
                position = torch.searchsorted(vertex_codes, code).clamp(
                    max=self.num_vertices - 1)
                found = vertex_codes[position] == code
                pair.append(torch.where(found, position + 1,
                                        torch.zeros_like(position)))
            self.neighbours.append(pair)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        self._build_matrices()

    def _encode_setup(self, keys: torch.Tensor, segment: torch.Tensor,
                      d: int) -> None:
        """Mixed-radix codes for (segment, key) with room for the blur's
        neighbours (coordinates move by at most d). Each image gets its
        own key range and block of codes, so that one image's narrow
        kernel (a wide key range) takes only its own share of the 64 bits,
        not every image's."""
        flat = keys.reshape(-1, d)
        point_segment = segment[:, None].expand(-1, keys.shape[1]).reshape(
            -1)
        segments = int(point_segment.max().item()) + 1 if len(flat) else 1
        index = point_segment[:, None].expand(-1, d)
        low = torch.zeros(segments, d, dtype=torch.long, device=keys.device)
        high = torch.zeros_like(low)
        low.scatter_reduce_(0, index, flat, 'amin', include_self=False)
        high.scatter_reduce_(0, index, flat, 'amax', include_self=False)
        self._low = low - (d + 1)
        span = high - self._low + d + 2  # segments x d
        strides = torch.cumprod(torch.cat([torch.ones_like(span[:, :1]),
                                           span[:, :-1]], 1), 1)
        sizes = [int(v) for v in (strides[:, -1] * span[:, -1]).tolist()]
        if sum(sizes) >= _CODE_LIMIT:
            raise OverflowError(
                f'the lattice of {segments} images spans too many vertex '
                'positions to encode in 64 bits; refine fewer images per '
                'batch (--batch-size)')
        bases = [0]
        for size in sizes[:-1]:
            bases.append(bases[-1] + size)
        self._strides = strides
        self._bases = torch.tensor(bases, dtype=torch.long,
                                   device=keys.device)

    def _encode(self, keys: torch.Tensor, segment: torch.Tensor
                ) -> torch.Tensor:
        return ((keys - self._low[segment]) * self._strides[segment]).sum(
            -1) + self._bases[segment]

    def _build_matrices(self) -> None:
        """Splatting and slicing as CSR matrices (vertex rows are shifted by
        one: row 0 is the empty neighbour), built once per lattice."""
        n, d1 = self.offsets.shape
        device = self.offsets.device
        vertices = self.num_vertices + 1
        # Slicing, N x vertices: each point's d + 1 vertices, in column
        # order within the row.
        columns, order = torch.sort(self.offsets + 1, dim=1)
        weights = torch.gather(self.weights, 1, order)
        # int32 indices: the sparse BLAS (MKL, cuSPARSE) take them as they
        # are; int64 ones are converted on every product.
        index = torch.int32 if max(n, vertices) * d1 < 2**31 else torch.long
        self.slice = torch.sparse_csr_tensor(
            torch.arange(0, n * d1 + 1, d1, device=device, dtype=index),
            columns.reshape(-1).to(index),
            (weights * self.alpha).reshape(-1), (n, vertices))
        # Splatting, vertices x N: its transpose, rows sorted by vertex.
        flat = columns.reshape(-1)
        by_vertex = torch.argsort(flat * n + torch.arange(
            n, device=device).repeat_interleave(d1))
        counts = torch.bincount(flat, minlength=vertices)
        crow = torch.zeros(vertices + 1, dtype=torch.long, device=device)
        crow[1:] = torch.cumsum(counts, 0)
        self.splat = torch.sparse_csr_tensor(
            crow.to(index),
            torch.div(by_vertex, d1, rounding_mode='floor').to(index),
            weights.reshape(-1)[by_vertex], (vertices, n))

    def compute(self, values: torch.Tensor) -> torch.Tensor:
        """Filter ``values`` (N x C): splat, blur, slice."""
        return self.slice @ _blur(self.splat @ values, self.neighbours)


def _blur(lattice: torch.Tensor, neighbours) -> torch.Tensor:
    """Blur vertex values (row 0: the empty neighbour, kept zero) along each
    lattice axis in turn: v + (v[n1] + v[n2]) / 2."""
    other = torch.zeros_like(lattice)
    pair = torch.empty_like(lattice[1:])
    for n1, n2 in neighbours:
        torch.index_select(lattice, 0, n1, out=pair)
        pair += lattice[n2]
        torch.add(lattice[1:], pair, alpha=0.5, out=other[1:])
        lattice, other = other, lattice
    return lattice


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
        self.neighbours = lattice.neighbours
        self.splat = _scale_columns(lattice.splat, norm[:, 0])
        self.slice = _scale_rows(lattice.slice, (norm * weight)[:, 0])

    def add_to(self, message: torch.Tensor, q: torch.Tensor) -> None:
        """``message`` += the kernel applied to ``q``."""
        message.add_(self.slice @ _blur(self.splat @ q, self.neighbours))


def _scale_rows(matrix: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """diag(scale) @ matrix, for a CSR matrix."""
    counts = matrix.crow_indices().diff().long()
    values = matrix.values() * scale.repeat_interleave(counts)
    return torch.sparse_csr_tensor(matrix.crow_indices(),
                                   matrix.col_indices(), values,
                                   matrix.shape)


def _scale_columns(matrix: torch.Tensor, scale: torch.Tensor
                   ) -> torch.Tensor:
    """matrix @ diag(scale), for a CSR matrix."""
    values = matrix.values() * scale[matrix.col_indices().long()]
    return torch.sparse_csr_tensor(matrix.crow_indices(),
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
    kernels = [_smoothness_kernel(tuple(shapes), str(device)),
               _Kernel(torch.cat(appear), segment, torch.cat(weights))]
    q = torch.softmax(log_q0, 1)
    message = torch.empty_like(log_q0)
    for _ in range(iterations):
        message.copy_(log_q0)
        for kernel in kernels:
            kernel.add_to(message, q)
        q = torch.softmax(message, 1)
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
