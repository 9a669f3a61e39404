"""The permutohedral lattice of Adams et al. (2010), exactly as
Krähenbühl's dense-CRF code (which pydensecrf wraps) builds it, in
PyTorch: the same elevation, rounding, barycentric weights, [1/2 1 1/2]
blur along the d + 1 lattice axes and final scaling. Krähenbühl's code keeps
it in its own file (``permutohedral.cpp``) too; the mean-field loop that
uses it is :mod:`fashionseg.crf.torch_backend`.
"""
import math
import warnings

import torch

_CODE_LIMIT = 2**62
# PyTorch warns at the first CSR tensor of a process that its support is
# in beta; the harness relies only on CSR times dense, on the CPU and
# with cuSPARSE, which the CRF's tests check against pydensecrf.
warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in '
                        'beta state', category=UserWarning)


def csr_matrix(crow_indices: torch.Tensor, col_indices: torch.Tensor,
               values: torch.Tensor, shape) -> torch.Tensor:
    """A CSR matrix, built without PyTorch's invariant checks (its
    indices are built sorted and in range here, and the tests hold them
    to it), which it otherwise warns about at every tool's first CRF."""
    return torch.sparse_csr_tensor(crow_indices, col_indices, values, shape,
                                   check_invariants=False)


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
        # The rank of each coordinate's residual (ties as the C++ loop):
        # rank[m] = #{j > m: diff_j > diff_m} + #{i < m: diff_i >= diff_m},
        # counted one coordinate j at a time against the others.
        diff = elevated - rem0.float()
        rank = total[:, None].repeat(1, d + 1)
        for j in range(d + 1):
            here = diff[:, j:j + 1]
            rank[:, :j] += here > diff[:, :j]
            rank[:, j + 1:] += here >= diff[:, j + 1:]
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
        self._encode_setup(rem0[:, :d] - rank[:, :d], segment, d)
        codes = self._encode(keys, segment[:, None])  # for all d + 1
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
        neighbours = []
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
            neighbours.append(pair)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        self._build_matrices()
        self.blur_steps = [_blur_step(n1, n2, self.splat.crow_indices().dtype)
                           for n1, n2 in neighbours]

    def _encode_setup(self, lowest: torch.Tensor, segment: torch.Tensor,
                      d: int) -> None:
        """Mixed-radix codes for (segment, key) with room for the blur's
        neighbours (coordinates move by at most d). Each image gets its
        own key range and block of codes, so that one image's narrow
        kernel (a wide key range) takes only its own share of the 64 bits,
        not every image's. The keys of a point's d + 1 vertices span
        ``lowest`` (its remainder-0 point less its ranks) to ``lowest`` + d
        on every axis, exactly: the range is read off the N points rather
        than their (d + 1) N vertices."""
        segments = int(segment.max().item()) + 1 if len(lowest) else 1
        index = segment[:, None].expand(-1, d)
        low = torch.zeros(segments, d, dtype=torch.long,
                          device=lowest.device)
        high = torch.zeros_like(low)
        low.scatter_reduce_(0, index, lowest, 'amin', include_self=False)
        high.scatter_reduce_(0, index, lowest, 'amax', include_self=False)
        high += d
        self._low = low - (d + 1)
        # The strides and sizes in Python's integers, which cannot wrap
        # around as 64-bit products would before the limit is checked.
        strides, sizes = [], []
        for row in (high - self._low + d + 2).tolist():  # segments x d
            stride = [1]
            for width in row[:-1]:
                stride.append(stride[-1] * width)
            strides.append(stride)
            sizes.append(stride[-1] * row[-1])
        if sum(sizes) >= _CODE_LIMIT:
            raise OverflowError(
                f'the lattice of {segments} images spans too many vertex '
                'positions to encode in 64 bits; refine fewer images per '
                'batch (--batch-size)')
        bases = [0]
        for size in sizes[:-1]:
            bases.append(bases[-1] + size)
        self._strides = torch.tensor(strides, dtype=torch.long,
                                     device=lowest.device)
        self._bases = torch.tensor(bases, dtype=torch.long,
                                   device=lowest.device)

    def _encode(self, keys: torch.Tensor, segment: torch.Tensor
                ) -> torch.Tensor:
        """Codes of ``keys`` (... x d) in the images ``segment`` (the same
        shape without d, or one that broadcasts to it)."""
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
        self.slice = csr_matrix(
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
        self.splat = csr_matrix(
            crow.to(index),
            torch.div(by_vertex, d1, rounding_mode='floor').to(index),
            weights.reshape(-1)[by_vertex], (vertices, n))

    def compute(self, values: torch.Tensor) -> torch.Tensor:
        """Filter ``values`` (N x C): splat, blur, slice."""
        return self.slice @ blur(self.splat @ values, self.blur_steps)


def _blur_step(n1: torch.Tensor, n2: torch.Tensor, index: torch.dtype
               ) -> torch.Tensor:
    """One axis of the blur, v + (v[n1] + v[n2]) / 2 for every vertex, as
    a CSR matrix on the vertex rows (row 0, the empty neighbour, has no
    entries and stays zero; so do entries for missing neighbours, which
    point at it). One sparse product per axis reads each neighbour once
    and writes the result once, where gathering and adding took four
    passes over the vertex values."""
    vertices = len(n1) + 1
    device = n1.device
    rows = torch.arange(1, vertices, device=device)
    columns = torch.stack([n1, rows, n2], 1)
    weights = torch.tensor([0.5, 1.0, 0.5], device=device).expand(
        len(rows), 3)
    columns, order = torch.sort(columns, dim=1)
    weights = torch.gather(weights, 1, order)
    present = columns > 0
    counts = torch.zeros(vertices + 1, dtype=torch.long, device=device)
    counts[2:] = torch.cumsum(present.sum(1), 0)
    return csr_matrix(
        counts.to(index), columns[present].to(index), weights[present],
        (vertices, vertices))


def blur(lattice: torch.Tensor, steps) -> torch.Tensor:
    """Blur vertex values (row 0: the empty neighbour, kept zero) along each
    lattice axis in turn (:func:`_blur_step`)."""
    for step in steps:
        lattice = step @ lattice
    return lattice
