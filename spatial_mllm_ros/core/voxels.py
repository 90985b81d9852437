# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Voxel sets of frames and the greedy maximum-coverage step of space-aware frame selection.

Frames become sets of integer voxel ids stored as one CSR incidence structure (``indptr`` +
``voxel_ids``); the greedy works on a boolean "covered" bitmap with lazily re-evaluated gains (CELF:
gains only shrink, so a stale gain is an upper bound), which makes it exact, including upstream's tie
rule (equal gains -> lowest frame index), while touching only a few frames per step.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# Dense id spaces up to this many voxels are de-duplicated with a scratch array instead of sorting.
DENSE_KEY_LIMIT = 1 << 24
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


def grid_keys(coords: np.ndarray, dims) -> np.ndarray:
    """Row-major int64 keys of non-negative voxel coordinates inside a grid of ``dims`` (nx, ny, nz)."""
    _, ny, nz = (int(d) for d in dims)
    return (coords[:, 0] * ny + coords[:, 1]) * nz + coords[:, 2]


def packed_keys(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbounded-grid keys: 21 bits per axis. Returns (keys of the in-range rows, in-range mask)."""
    shifted = coords + AXIS_OFFSET
    ok = np.all((shifted >= 0) & (shifted < (1 << AXIS_BITS)), axis=1)
    shifted = shifted[ok]
    keys = (shifted[:, 0] << (2 * AXIS_BITS)) | (shifted[:, 1] << AXIS_BITS) | shifted[:, 2]
    return keys, ok


def voxel_sets_from_keys(per_frame_keys: list[np.ndarray], key_space: int | None = None) -> VoxelSets:
    """CSR voxel sets from each frame's (possibly repeated) int64 keys.

    With a known ``key_space`` of at most :data:`DENSE_KEY_LIMIT`, keys are used as ids directly and
    de-duplicated in O(P) per frame with a scratch array; otherwise they are sorted and compacted.
    """
    count = len(per_frame_keys)
    if key_space is not None and key_space <= DENSE_KEY_LIMIT:
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


def greedy_max_coverage(sets: VoxelSets, k: int, eligible: np.ndarray | None = None) -> GreedyResult:
    """Greedy maximum coverage, exactly as upstream's ``maximum_coverage_sampling``.

    Each step picks the frame adding most uncovered voxels (strictly more than the best so far, frames
    scanned in ascending index: ties -> lowest index); it stops after ``k`` picks or when the best gain
    is <= 0.

    Lazy evaluation (CELF) keeps a max-heap of (-gain upper bound, index); a popped frame whose
    re-evaluated gain still heads the heap is the true arg-max with the lowest index among equals.

    Args:
        sets: the frames' voxel sets.
        k: most frames to pick.
        eligible: optional (N,) bool mask of frames that may be picked.
    """
    sizes = sets.sizes()
    heap = [(-int(size), i) for i, size in enumerate(sizes.tolist())
            if eligible is None or eligible[i]]
    heapq.heapify(heap)
    covered = np.zeros(sets.id_space, dtype=bool)
    order: list[int] = []
    gains: list[int] = []
    total = 0
    stopped_early = False
    fresh_round = np.full(sizes.size, -1, dtype=np.int64)  # pick count when a gain was last recomputed
    while len(order) < k and heap:
        neg_gain, index = heap[0]
        if fresh_round[index] == len(order):  # up to date and still the best: take it
            heapq.heappop(heap)
            if -neg_gain <= 0:
                stopped_early = True
                break
            ids = sets.frame(index)
            covered[ids] = True
            order.append(index)
            gains.append(-neg_gain)
            total += -neg_gain
            continue
        ids = sets.frame(index)
        gain = int(ids.size - np.count_nonzero(covered[ids]))
        fresh_round[index] = len(order)
        heapq.heapreplace(heap, (-gain, index))
    return GreedyResult(order=order, gains=gains, covered=total, stopped_early=stopped_early)
