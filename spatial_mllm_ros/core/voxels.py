# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Voxel sets of frames and the greedy maximum-coverage step of space-aware frame selection.

Frames become sets of integer voxel ids stored as one CSR incidence structure (``indptr`` +
``voxel_ids``); the greedy works on a boolean "covered" bitmap, either recomputing all gains per step
with vectorised segment sums or re-evaluating lazily (CELF: gains only shrink, so a stale gain is an
upper bound). Both are exact, including upstream's tie rule (equal gains -> lowest frame index).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# Dense id spaces up to this many voxels are de-duplicated with a scratch array instead of sorting.
DENSE_KEY_LIMIT = 1 << 24
# A key space up to this many times a frame's point count is de-duplicated by scanning a bitmap.
BITMAP_SCAN_FACTOR = 32
# The dense greedy is used while k * (voxel incidences) stays below this many element operations.
DENSE_GREEDY_WORK = 1 << 23
# Packed absolute voxel keys: 21 bits per axis, coordinates in [-2^20, 2^20).
AXIS_BITS = 21
AXIS_OFFSET = 1 << (AXIS_BITS - 1)


@dataclass
class VoxelSets:
    """Frames as sets of voxel ids (CSR): frame ``i`` covers ``voxel_ids[indptr[i]:indptr[i + 1]]``.

    Attributes:
        indptr: (N + 1,) int64 offsets.
        voxel_ids: (nnz,) int64 ids in ``[0, id_space)``, unique within each frame (not sorted).
        id_space: size of the id range (a bitmap of this length covers every id).
    """

    indptr: np.ndarray
    voxel_ids: np.ndarray
    id_space: int

    @property
    def num_frames(self) -> int:
        """Number of frames."""
        return int(self.indptr.size - 1)

    def sizes(self) -> np.ndarray:
        """(N,) int64 number of voxels of each frame."""
        return np.diff(self.indptr)

    def frame(self, index: int) -> np.ndarray:
        """The voxel ids of one frame."""
        return self.voxel_ids[self.indptr[index]:self.indptr[index + 1]]

    def total_voxels(self) -> int:
        """Distinct voxels over all frames."""
        if self.voxel_ids.size == 0:
            return 0
        seen = np.zeros(self.id_space, dtype=bool)
        seen[self.voxel_ids] = True
        return int(np.count_nonzero(seen))

    def covered_voxels(self, indices) -> int:
        """Distinct voxels over the given frames."""
        seen = np.zeros(self.id_space, dtype=bool)
        for i in indices:
            seen[self.frame(int(i))] = True
        return int(np.count_nonzero(seen))

    def coverage(self, indices) -> float:
        """Fraction of all voxels seen by the given frames (NaN when there are no voxels)."""
        total = self.total_voxels()
        return self.covered_voxels(indices) / total if total else float("nan")


def voxel_coords(points: np.ndarray, origin: np.ndarray, voxel_size) -> np.ndarray:
    """(N, 3) int64 ``floor((points - origin) / voxel_size)`` evaluated in float32 like upstream."""
    offset = np.asarray(origin, dtype=np.float32)
    scaled = (np.asarray(points, dtype=np.float32) - offset) / np.float32(voxel_size)
    return np.floor(scaled).astype(np.int64)


def packed_keys(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbounded-grid keys of (3, N) int64 voxel coordinates, 21 bits per axis.

    Returns (keys of the in-range columns, (N,) in-range mask).
    """
    shifted = coords + AXIS_OFFSET
    limit = 1 << AXIS_BITS
    ok = (shifted[0] >= 0) & (shifted[0] < limit) & (shifted[1] >= 0) & (shifted[1] < limit) \
        & (shifted[2] >= 0) & (shifted[2] < limit)
    shifted = shifted[:, ok]
    keys = (shifted[0] << (2 * AXIS_BITS)) | (shifted[1] << AXIS_BITS) | shifted[2]
    return keys, ok


def voxel_sets_from_keys(per_frame_keys: list[np.ndarray], key_space: int | None = None) -> VoxelSets:
    """CSR voxel sets from each frame's (possibly repeated) int64 keys.

    With a known ``key_space``, keys are used as ids directly: a small space is de-duplicated by
    marking a bitmap and scanning it, one up to :data:`DENSE_KEY_LIMIT` in O(P) per frame with a
    scratch array; otherwise keys are sorted and compacted.
    """
    count = len(per_frame_keys)
    mean_size = sum(keys.size for keys in per_frame_keys) / max(count, 1)
    if key_space is not None and key_space <= BITMAP_SCAN_FACTOR * max(mean_size, 1024):
        # Small grid: mark, scan the whole bitmap (sorted ids), unmark.
        marks = np.zeros(key_space, dtype=bool)
        unique_sets = []
        for keys in per_frame_keys:
            marks[keys] = True
            ids = np.flatnonzero(marks)
            marks[ids] = False
            unique_sets.append(ids)
        id_space = int(key_space)
    elif key_space is not None and key_space <= DENSE_KEY_LIMIT:
        scratch = np.empty(key_space, dtype=np.int64)
        unique_sets = []
        for keys in per_frame_keys:
            position = np.arange(keys.size, dtype=np.int64)
            scratch[keys] = position  # one (arbitrary) position per key survives
            unique_sets.append(keys[scratch[keys] == position])
        id_space = int(key_space)
    else:
        unique_sets = [np.unique(keys) for keys in per_frame_keys]
        merged = np.concatenate(unique_sets) if unique_sets else np.zeros(0, dtype=np.int64)
        distinct, compact = np.unique(merged, return_inverse=True)
        sizes = [u.size for u in unique_sets]
        unique_sets = np.split(compact.astype(np.int64), np.cumsum(sizes)[:-1]) if count else []
        id_space = int(distinct.size)
    indptr = np.zeros(count + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([u.size for u in unique_sets])
    ids = np.concatenate(unique_sets).astype(np.int64) if count else np.zeros(0, dtype=np.int64)
    return VoxelSets(indptr=indptr, voxel_ids=ids, id_space=max(id_space, 1))


def voxel_size_from_extent(extent: np.ndarray, divisor: float) -> float:
    """Upstream's rule, shortest box side / divisor in float32, with a guard for flat or empty boxes."""
    size = np.float32(np.min(extent)) / np.float32(divisor) if extent.size else np.float32(0)
    if not (np.isfinite(size) and size > 0):
        size = np.float32(np.max(extent)) / np.float32(divisor) if extent.size else np.float32(0)
    if not (np.isfinite(size) and size > 0):
        size = np.float32(1.0)
    return float(size)


def grid_voxel_sets(groups: list[tuple[np.ndarray, np.ndarray]], voxel_size: float | None = None,
                    divisor: float = 20.0, frame_order: list[int] | None = None
                    ) -> tuple[VoxelSets, float, np.ndarray, np.ndarray]:
    """Voxel sets of frames on one grid anchored at the minimum of all their valid points.

    Args:
        groups: batches of frames, each (world (n, 3, P) float32 points, valid (n, P) bool); the
            frames of the result are the groups' frames in order.
        voxel_size: voxel edge, or None for upstream's rule (shortest side of the valid points'
            bounding box / ``divisor``, in float32).
        divisor: upstream's lambda (20).
        frame_order: optional permutation: result frame ``j`` is the ``frame_order[j]``-th frame of
            the concatenated groups (the greedy's tie rule depends on frame order).

    Returns:
        (sets, voxel size, (3,) float32 grid origin, (3,) int64 grid dims); voxel ids are the row-major
        keys ``(ix * ny + iy) * nz + iz`` with ``i = floor((p - origin) / voxel_size)`` in float32.
    """
    # Valid points only, as contiguous (3, M) columns, plus each frame's point count.
    columns, counts = [], []
    for world, valid in groups:
        packed = np.empty((3, int(np.count_nonzero(valid))), dtype=np.float32)
        for axis in range(3):
            packed[axis] = world[:, axis][valid]
        columns.append(packed)
        counts.extend(np.count_nonzero(valid, axis=1).tolist())
    points = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    if points.shape[1] == 0:
        empty = [np.zeros(0, dtype=np.int64)] * len(counts)
        return voxel_sets_from_keys(empty, 1), float("nan"), np.zeros(3, np.float32), np.ones(3, np.int64)
    low, high = points.min(axis=1), points.max(axis=1)
    extent = high - low
    if voxel_size is None:
        voxel_size = voxel_size_from_extent(extent, divisor)
    # Keep the grid addressable with int64 keys (only bites for absurdly small voxels).
    voxel_size = max(float(voxel_size), float(np.max(extent)) / 2.0**20)
    step = np.float32(voxel_size)
    dims = np.floor((high - low) / step).astype(np.int64) + 1
    key_space = int(np.prod(dims.astype(object)))
    index_type = np.int32 if key_space < 2**31 else np.int64  # int32 halves the memory traffic
    scaled = points - low[:, None]  # (3, M), the same float32 steps as upstream
    scaled /= step
    np.floor(scaled, out=scaled)
    coords = scaled.astype(index_type)
    keys = coords[0] * index_type(dims[1])
    keys += coords[1]
    keys *= index_type(dims[2])
    keys += coords[2]
    keys = keys.astype(np.int64, copy=False)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    per_frame_keys = [keys[offsets[i]:offsets[i + 1]] for i in range(len(counts))]
    if frame_order is not None:
        per_frame_keys = [per_frame_keys[i] for i in frame_order]
    return voxel_sets_from_keys(per_frame_keys, key_space), float(voxel_size), low, dims


@dataclass
class GreedyResult:
    """Outcome of :func:`greedy_max_coverage`.

    Attributes:
        order: frame indices in the order they were picked.
        gains: new voxels each pick added.
        covered: distinct voxels covered by the picks.
        stopped_early: True when it stopped before k because no frame added anything.
    """

    order: list[int]
    gains: list[int]
    covered: int
    stopped_early: bool


def greedy_max_coverage(sets: VoxelSets, k: int, strategy: str = "auto") -> GreedyResult:
    """Greedy maximum coverage, exactly as upstream's ``maximum_coverage_sampling``.

    Each step picks the frame adding most uncovered voxels (strictly more than the best so far, frames
    scanned in ascending index: ties -> lowest index); it stops after ``k`` picks or when the best gain
    is <= 0.

    Two exact strategies: ``dense`` recomputes every frame's gain per step with one gather and one
    segmented sum over the incidence (no Python loop over frames); ``lazy`` (CELF) keeps a heap of
    stale gains, which are upper bounds, and re-evaluates only the frames that reach its top - cheaper
    when there are many frames. ``auto`` picks ``dense`` while k * (voxel incidences) is small.

    Args:
        sets: the frames' voxel sets.
        k: most frames to pick.
        strategy: "auto", "dense" or "lazy".
    """
    if strategy == "auto":
        strategy = "dense" if sets.voxel_ids.size * min(k, sets.num_frames) <= DENSE_GREEDY_WORK else "lazy"
    if strategy == "dense":
        return _greedy_dense(sets, k)
    if strategy == "lazy":
        return _greedy_lazy(sets, k)
    raise ValueError(f"unknown greedy strategy {strategy!r}; expected 'auto', 'dense' or 'lazy'")


def _greedy_dense(sets: VoxelSets, k: int) -> GreedyResult:
    sizes = sets.sizes()
    count = sizes.size
    starts = sets.indptr[:-1]
    empty = sizes == 0
    covered = np.zeros(sets.id_space, dtype=bool)
    entry_covered = np.zeros(sets.voxel_ids.size + 1, dtype=np.int32)  # last: sentinel for empty tails
    gains = sizes.copy()
    available = np.ones(count, dtype=bool)
    order: list[int] = []
    picked_gains: list[int] = []
    stopped_early = False
    for _ in range(min(k, count)):
        best = int(np.argmax(np.where(available, gains, -1)))  # first maximum: lowest index wins ties
        gain = int(gains[best])
        if gain <= 0:
            stopped_early = True
            break
        covered[sets.frame(best)] = True
        available[best] = False
        order.append(best)
        picked_gains.append(gain)
        entry_covered[:-1] = covered[sets.voxel_ids]
        gains = sizes - np.add.reduceat(entry_covered, starts, dtype=np.int64)
        gains[empty] = 0  # reduceat returns the next element for an empty segment
    return GreedyResult(order=order, gains=picked_gains, covered=sum(picked_gains),
                        stopped_early=stopped_early)


def _greedy_lazy(sets: VoxelSets, k: int) -> GreedyResult:
    # Heap of (-gain upper bound, index): a popped frame whose re-evaluated gain still heads the heap
    # is the true arg-max, and the lowest index among equal gains.
    sizes = sets.sizes()
    heap = [(-int(size), i) for i, size in enumerate(sizes.tolist())]
    heapq.heapify(heap)
    covered = np.zeros(sets.id_space, dtype=bool)
    order: list[int] = []
    gains: list[int] = []
    stopped_early = False
    fresh_round = np.full(sizes.size, -1, dtype=np.int64)  # pick count when a gain was last recomputed
    while len(order) < k and heap:
        neg_gain, index = heap[0]
        if fresh_round[index] == len(order):  # up to date and still the best: take it
            heapq.heappop(heap)
            if -neg_gain <= 0:
                stopped_early = True
                break
            covered[sets.frame(index)] = True
            order.append(index)
            gains.append(-neg_gain)
            continue
        ids = sets.frame(index)
        gain = int(ids.size - np.count_nonzero(covered[ids]))
        fresh_round[index] = len(order)
        heapq.heapreplace(heap, (-gain, index))
    return GreedyResult(order=order, gains=gains, covered=sum(gains), stopped_early=stopped_early)
