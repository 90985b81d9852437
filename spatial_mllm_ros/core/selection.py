# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Frame selectors: which K of the buffered frames the model sees.

All selectors share one interface, ``select(frames, k) -> Selection`` with time-sorted indices into
``frames`` and a coverage report. Names for :func:`make_selector`:

* ``uniform``: evenly spaced indices (upstream's baseline, ``linspace(0, n - 1, k).round()``).
* ``space_aware``: metric coverage from sensor depth + poses + intrinsics. Depth is unprojected every
  ``stride`` pixels, voxelised (voxel = shortest side of the points' bounding box / 20 like upstream, or
  a fixed size in metres) and the greedy maximum coverage of :mod:`~spatial_mllm_ros.core.voxels` picks
  the frames. Falls back to ``uniform`` (saying so in ``method``) when too few frames have geometry.
* ``space_aware_incremental``: the same objective with fixed metric voxels; frames are voxelised once
  when inserted (``insert(frame)``, or lazily on first use) so a query costs only the greedy step.
* ``space_aware_points``: upstream's VGGT route on predicted world points + confidences: points at or
  above the 50th confidence percentile (and > 0.1) are kept, voxel = shortest bounding-box side / 20,
  all in float32, reproducing upstream's selections exactly.

Like upstream, the space-aware selectors first take at most ``max_candidates`` (128) frames uniformly
and may return fewer than ``k`` frames when no remaining frame adds coverage (``fill=True`` tops the
selection up with evenly spaced unselected frames instead).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.geometry import (
    ROTATION_TOLERANCE,
    intrinsics_problem,
    pose_problem,
    unproject_depth,
    unproject_depth_batch,
)
from spatial_mllm_ros.core.voxels import (
    VoxelSets,
    greedy_max_coverage,
    grid_voxel_sets,
    packed_keys,
)

NAN = float("nan")
# Upstream's lambda: the voxel size is the shortest side of the bounding box divided by this.
UPSTREAM_VOXEL_DIVISOR = 20.0
UPSTREAM_MAX_CANDIDATES = 128


@dataclass
class Selection:
    """Chosen frames and how well they cover the scene.

    Attributes:
        indices: chosen positions in the input frame list, increasing (= time order for sorted input).
        coverage: fraction of all candidate voxels the chosen frames cover (NaN when not measured).
        voxel_size: voxel edge in the points' units (metres for sensor depth; NaN when unused).
        method: the selector that ran, with any fallback spelled out.
        candidates: how many frames were considered.
        greedy_order: the same frames in the order the greedy picked them (empty for uniform).
        covered_voxels: distinct voxels the selection covers (0 when not measured).
        total_voxels: distinct voxels over all candidates (0 when not measured).
        stopped_early: True when fewer than k frames were chosen because nothing added coverage.
    """

    indices: list[int]
    coverage: float = NAN
    voxel_size: float = NAN
    method: str = ""
    candidates: int = 0
    greedy_order: list[int] = field(default_factory=list)
    covered_voxels: int = 0
    total_voxels: int = 0
    stopped_early: bool = False


def uniform_indices(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when k >= n), increasing."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)).tolist()


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _fill_up(chosen: list[int], n: int, k: int) -> list[int]:
    """Add evenly spaced unchosen indices of range(n) until there are min(k, n)."""
    missing = min(k, n) - len(chosen)
    if missing <= 0:
        return chosen
    rest = sorted(set(range(n)) - set(chosen))
    return chosen + [rest[i] for i in uniform_indices(len(rest), missing)]


def voxel_sets_from_points(per_frame_points: list[np.ndarray], voxel_size: float | None = None,
                           divisor: float = UPSTREAM_VOXEL_DIVISOR
                           ) -> tuple[VoxelSets, float, np.ndarray, np.ndarray]:
    """Voxel sets of frames given their (P_i, 3) world points (see :func:`grid_voxel_sets`)."""
    groups = [(np.ascontiguousarray(np.asarray(p, dtype=np.float32).T)[None], np.ones((1, len(p)), bool))
              for p in per_frame_points]
    return grid_voxel_sets(groups, voxel_size, divisor)


def usable_geometry(frames: Sequence[Frame], indices: Sequence[int]) -> list[int]:
    """The given indices whose frames have depth, valid intrinsics and a rigid pose (vectorised check)."""
    present = [i for i in indices if frames[i].has_geometry]
    if not present:
        return []
    poses = np.stack([frames[i].pose for i in present])  # (m, 4, 4)
    rotations = poses[:, :3, :3]
    with np.errstate(invalid="ignore"):
        orthonormal = np.abs(np.einsum("nji,njk->nik", rotations, rotations) - np.eye(3)).max(axis=(1, 2))
        bottom_ok = np.all(np.abs(poses[:, 3] - (0.0, 0.0, 0.0, 1.0)) <= 1e-6, axis=1)
        rigid = (np.isfinite(poses).all(axis=(1, 2)) & (orthonormal <= ROTATION_TOLERANCE)
                 & (np.linalg.det(rotations) > 0) & bottom_ok)
    intrinsics_ok: dict[bytes, bool] = {}
    usable = []
    for i, ok in zip(present, rigid.tolist(), strict=True):
        k = frames[i].K
        key = k.tobytes()
        if key not in intrinsics_ok:
            intrinsics_ok[key] = not intrinsics_problem(k)
        if ok and intrinsics_ok[key]:
            usable.append(i)
    return usable


def _greedy_selection(sets: VoxelSets, k: int, candidate_indices: list[int], voxel_size: float,
                      method: str, n_frames: int, fill: bool) -> Selection:
    """Run the greedy on candidate sets and map the picks back to input-frame indices."""
    result = greedy_max_coverage(sets, k)
    total = sets.total_voxels()
    chosen_local = sorted(result.order)
    indices = [candidate_indices[i] for i in chosen_local]
    if fill and len(indices) < min(k, n_frames):
        indices = sorted(_fill_up(indices, n_frames, k))
        method += " + uniform fill"
    return Selection(indices=sorted(indices), coverage=result.covered / total if total else NAN,
                     voxel_size=float(voxel_size), method=method, candidates=len(candidate_indices),
                     greedy_order=[candidate_indices[i] for i in result.order], covered_voxels=result.covered,
                     total_voxels=total, stopped_early=result.stopped_early)


class UniformSelector:
    """Evenly spaced frames (upstream's baseline); coverage is not measured."""

    name = "uniform"

    def select(self, frames: Sequence[Frame], k: int) -> Selection:
        """Pick ``k`` evenly spaced frames."""
        k = _check_k(k)
        return Selection(indices=uniform_indices(len(frames), k), method=self.name, candidates=len(frames))


def _uniform_fallback(frames: Sequence[Frame], k: int, reason: str) -> Selection:
    selection = UniformSelector().select(frames, k)
    selection.method = f"uniform (fallback: {reason})"
    return selection


class SpaceAwareSelector:
    """Greedy voxel coverage from sensor depth, intrinsics and poses (batch: voxelises on every call).

    Args:
        voxel_size: voxel edge in metres, or None for upstream's rule (bounding box shortest side / 20).
        stride: depth pixel stride used for unprojection (8 -> 80x60 points from 640x480).
        min_depth, max_depth: valid depth range in metres.
        max_candidates: at most this many frames (evenly spaced) are considered, like upstream's 128.
        divisor: the /20 of upstream's voxel rule.
        fill: top up with evenly spaced frames when the greedy stops before k.
    """

    name = "space_aware"

    def __init__(self, voxel_size: float | None = None, stride: int = 8, min_depth: float = 0.1,
                 max_depth: float = 10.0, max_candidates: int | None = UPSTREAM_MAX_CANDIDATES,
                 divisor: float = UPSTREAM_VOXEL_DIVISOR, fill: bool = False) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if voxel_size is not None and not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a positive number of metres or None, got {voxel_size}")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.voxel_size = voxel_size
        self.stride = int(stride)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.max_candidates = max_candidates
        self.divisor = float(divisor)
        self.fill = bool(fill)

    def frame_points(self, frame: Frame) -> np.ndarray:
        """(P, 3) float32 world points of a frame's strided valid depth."""
        depth = frame.depth_m(self.stride)
        return unproject_depth(depth, frame.K, frame.pose, self.stride, self.min_depth, self.max_depth)

    def select(self, frames: Sequence[Frame], k: int) -> Selection:
        """Pick up to ``k`` frames maximising voxel coverage (indices increasing)."""
        k = _check_k(k)
        n = len(frames)
        candidates = uniform_indices(n, self.max_candidates) if self.max_candidates else list(range(n))
        usable = usable_geometry(frames, candidates)
        if len(usable) < min(k, n) or not usable:
            return _uniform_fallback(frames, k, f"{len(candidates) - len(usable)} of {len(candidates)} "
                                                "candidate frames lack depth/pose/K")
        sets, voxel_size = self.voxel_sets([frames[i] for i in usable])
        selection = _greedy_selection(sets, k, usable, voxel_size, self.name, n, self.fill)
        if selection.total_voxels == 0:
            return _uniform_fallback(frames, k, "no depth pixel in range")
        return selection

    def voxel_sets(self, frames: Sequence[Frame]) -> tuple[VoxelSets, float]:
        """Voxel sets of frames that all have geometry, and the voxel size used (for coverage reports)."""
        batches: dict[tuple, list[int]] = {}
        for position, frame in enumerate(frames):
            k = np.asarray(frame.K, dtype=np.float64)
            key = (frame.depth.shape, frame.depth.dtype.str, float(frame.depth_scale), k.tobytes())
            batches.setdefault(key, []).append(position)
        groups, concatenated = [], []
        for positions in batches.values():
            first = frames[positions[0]]
            raw = np.stack([frames[i].depth[::self.stride, ::self.stride] for i in positions])
            depth = raw if raw.dtype == np.float32 else raw.astype(np.float32)
            if first.depth_scale != 1.0:
                depth = depth * np.float32(first.depth_scale)
            poses = np.stack([frames[i].pose for i in positions])
            groups.append(unproject_depth_batch(depth, first.K, poses, self.stride, self.min_depth,
                                                self.max_depth))
            concatenated.extend(positions)
        order = np.argsort(concatenated, kind="stable").tolist()
        sets, voxel_size, _, _ = grid_voxel_sets(groups, self.voxel_size, self.divisor, frame_order=order)
        return sets, voxel_size


class SpaceAwareIncrementalSelector:
    """Greedy voxel coverage on fixed metric voxels, maintained as frames arrive.

    ``insert(frame)`` voxelises a frame once (call it from the camera callback, or let ``select`` do it
    for frames it has not seen); ``select`` then only runs the greedy. Frames are identified by
    ``(camera_id, stamp)``: call ``clear()`` when the clock was reset (bag loop) so old voxel sets are
    not reused for new frames with the same stamps. At most ``max_cached`` frames are kept (least
    recently used dropped first). Thread-safe: insert and select may run on different threads.

    Args:
        voxel_size: voxel edge in metres (a fixed world grid, so it cannot follow a bounding box).
        stride, min_depth, max_depth, max_candidates, fill: as for :class:`SpaceAwareSelector`.
        max_cached: most frames whose voxel sets are kept.
    """

    name = "space_aware_incremental"

    def __init__(self, voxel_size: float = 0.1, stride: int = 8, min_depth: float = 0.1,
                 max_depth: float = 10.0, max_candidates: int | None = UPSTREAM_MAX_CANDIDATES,
                 max_cached: int = 4096, fill: bool = False) -> None:
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size}")
        if max_cached < 1:
            raise ValueError(f"max_cached must be >= 1, got {max_cached}")
        self._points = SpaceAwareSelector(voxel_size=voxel_size, stride=stride, min_depth=min_depth,
                                          max_depth=max_depth)
        self.voxel_size = float(voxel_size)
        self.max_candidates = max_candidates
        self.max_cached = int(max_cached)
        self.fill = bool(fill)
        self._lock = threading.Lock()
        self._sets: OrderedDict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # Id table: packed voxel keys (sorted) and their compact ids; ids are handed out in arrival order.
        self._table_keys = np.zeros(0, dtype=np.int64)
        self._table_ids = np.zeros(0, dtype=np.int64)
        self._live_ids = 0  # sum of the cached frames' voxel counts

    def __len__(self) -> int:
        """Frames whose voxel sets are cached."""
        return len(self._sets)

    def insert(self, frame: Frame) -> int:
        """Voxelise a frame (no-op when already cached). Returns its voxel count, or -1 without geometry."""
        with self._lock:
            ids = self._voxelise(frame)
            self._maintain()
            return -1 if ids is None else int(ids.size)

    def forget_before(self, stamp: float) -> int:
        """Drop cached frames older than ``stamp``; returns how many were dropped."""
        with self._lock:
            old = [key for key in self._sets if key[1] < stamp]
            for key in old:
                self._live_ids -= self._sets.pop(key)[1].size
            self._maintain()
            return len(old)

    def clear(self) -> None:
        """Forget every cached voxel set (after a clock reset)."""
        with self._lock:
            self._sets.clear()
            self._table_keys = np.zeros(0, dtype=np.int64)
            self._table_ids = np.zeros(0, dtype=np.int64)
            self._live_ids = 0

    def select(self, frames: Sequence[Frame], k: int) -> Selection:
        """Pick up to ``k`` frames maximising coverage, voxelising only frames not inserted before."""
        k = _check_k(k)
        n = len(frames)
        candidates = uniform_indices(n, self.max_candidates) if self.max_candidates else list(range(n))
        with self._lock:
            voxelised = [(i, self._voxelise(frames[i])) for i in candidates]
            usable = [i for i, ids in voxelised if ids is not None]
            id_sets = [ids for _, ids in voxelised if ids is not None]
            if len(usable) < min(k, n) or not usable:
                self._maintain()
                return _uniform_fallback(frames, k, f"{len(candidates) - len(usable)} of {len(candidates)} "
                                                    "candidate frames lack depth/pose/K")
            indptr = np.zeros(len(id_sets) + 1, dtype=np.int64)
            indptr[1:] = np.cumsum([ids.size for ids in id_sets])
            sets = VoxelSets(indptr=indptr, voxel_ids=np.concatenate(id_sets),
                             id_space=max(self._table_ids.size, 1))
            self._maintain()  # ids may be renumbered from here on; the sets above hold their own copy
        selection = _greedy_selection(sets, k, usable, self.voxel_size, self.name, n, self.fill)
        if selection.total_voxels == 0:
            return _uniform_fallback(frames, k, "no depth pixel in range")
        return selection

    def _voxelise(self, frame: Frame) -> np.ndarray | None:
        """A frame's compact voxel ids, cached; None without usable geometry. Caller holds the lock."""
        key = (frame.camera_id, float(frame.stamp))
        cached = self._sets.get(key)
        if cached is not None:
            self._sets.move_to_end(key)
            return cached[1]
        if not frame.has_geometry or pose_problem(frame.pose) or intrinsics_problem(frame.K):
            return None
        keys = np.unique(packed_keys(self.frame_coords(frame))[0])
        ids = self._compact_ids(keys)
        self._sets[key] = (keys, ids)
        self._live_ids += ids.size
        return ids

    def frame_coords(self, frame: Frame) -> np.ndarray:
        """(3, P) int64 world voxel coordinates ``floor(p / voxel_size)`` of a frame's valid strided depth."""
        points = self._points
        depth = frame.depth_m(points.stride)[None]
        world, valid = unproject_depth_batch(depth, frame.K, frame.pose[None], points.stride,
                                             points.min_depth, points.max_depth)
        scaled = world[0][:, valid[0]]  # (3, P) float32
        scaled /= np.float32(self.voxel_size)
        return np.floor(scaled).astype(np.int64)

    def _maintain(self) -> None:
        """Evict beyond ``max_cached``; renumber ids when most of the table belongs to evicted frames."""
        while len(self._sets) > self.max_cached:
            self._live_ids -= self._sets.popitem(last=False)[1][1].size
        if self._table_ids.size <= max(4 * self._live_ids, 1 << 16):
            return
        self._table_keys = np.zeros(0, dtype=np.int64)
        self._table_ids = np.zeros(0, dtype=np.int64)
        for key, (keys, _) in self._sets.items():
            self._sets[key] = (keys, self._compact_ids(keys))

    def _compact_ids(self, keys: np.ndarray) -> np.ndarray:
        """Compact ids of sorted unique packed voxel keys, adding unseen keys to the table."""
        table_keys, table_ids = self._table_keys, self._table_ids
        position = np.searchsorted(table_keys, keys)
        known = np.zeros(keys.size, dtype=bool)
        inside = position < table_keys.size
        known[inside] = table_keys[position[inside]] == keys[inside]
        ids = np.empty(keys.size, dtype=np.int64)
        ids[known] = table_ids[position[known]]
        new_keys = keys[~known]
        new_ids = np.arange(table_ids.size, table_ids.size + new_keys.size, dtype=np.int64)
        ids[~known] = new_ids
        self._table_keys = np.insert(table_keys, position[~known], new_keys)
        self._table_ids = np.insert(table_ids, position[~known], new_ids)
        return ids


PointPredictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class PointsVoxelInfo:
    """Intermediate values of the VGGT route, for inspection and tests.

    Attributes:
        conf_threshold: the float32 confidence percentile.
        conf_mask: (T, H, W) bool points kept.
        bbox_min, bbox_max: (3,) float32 bounds of the kept points.
        voxel_size: float32 shortest side / divisor, as a Python float.
        grid_dims: (3,) voxels per axis; voxel ids are ``(ix * ny + iy) * nz + iz``.
    """

    conf_threshold: np.float32
    conf_mask: np.ndarray
    bbox_min: np.ndarray
    voxel_size: float
    grid_dims: np.ndarray
    points: np.ndarray = field(repr=False, default=None)  # (T, H, W, 3) float32, for bbox_max

    @functools.cached_property
    def bbox_max(self) -> np.ndarray:
        """(3,) float32 upper bound of the kept points, computed on demand (selection never needs it)."""
        valid = self.points[self.conf_mask]
        return valid.max(axis=0) if valid.size else np.zeros(3, dtype=np.float32)


def points_voxel_sets(world_points: np.ndarray, conf: np.ndarray, percentile: float = 50.0,
                      min_conf: float = 0.1, divisor: float = UPSTREAM_VOXEL_DIVISOR
                      ) -> tuple[VoxelSets, PointsVoxelInfo]:
    """Upstream's voxel sets from a predicted point map ([1,]T, H, W, 3) and confidences ([1,]T, H, W).

    Keeps points with confidence >= the float32 ``percentile`` (numpy linear interpolation) and
    > ``min_conf``; box, voxel size and voxel indices in float32 like upstream.
    """
    points = np.asarray(world_points, dtype=np.float32)
    confidence = np.asarray(conf, dtype=np.float32)
    if points.ndim == 5:
        points = points[0]
    if confidence.ndim == 4:
        confidence = confidence[0]
    if points.ndim != 4 or points.shape[-1] != 3 or confidence.shape != points.shape[:3]:
        raise ValueError(f"world_points must be (T, H, W, 3) and conf (T, H, W), got {points.shape} and "
                         f"{confidence.shape}")
    threshold = np.float32(np.percentile(confidence, percentile))
    mask = (confidence >= threshold) & (confidence > np.float32(min_conf))
    count = points.shape[0]
    world = np.ascontiguousarray(points.reshape(count, -1, 3).transpose(0, 2, 1))  # (T, 3, H*W)
    sets, voxel_size, origin, dims = grid_voxel_sets([(world, mask.reshape(count, -1))], None, divisor)
    info = PointsVoxelInfo(conf_threshold=threshold, conf_mask=mask, bbox_min=origin, voxel_size=voxel_size,
                           grid_dims=dims, points=points)
    return sets, info


class SpaceAwarePointsSelector:
    """Upstream's VGGT route: coverage of predicted world points kept by a confidence percentile.

    Args:
        predictor: ``predictor(rgb[T, H, W, 3] uint8) -> (world_points[T, h, w, 3], conf[T, h, w])``
            (e.g. the VGGT model); without one, ``select`` falls back to uniform.
        percentile, min_conf, divisor: upstream's 50th percentile, > 0.1 and /20.
        max_candidates: frames (evenly spaced) given to the predictor, upstream's 128.
        fill: top up with evenly spaced frames when the greedy stops before k.
    """

    name = "space_aware_points"

    def __init__(self, predictor: PointPredictor | None = None, percentile: float = 50.0,
                 min_conf: float = 0.1, divisor: float = UPSTREAM_VOXEL_DIVISOR,
                 max_candidates: int | None = UPSTREAM_MAX_CANDIDATES, fill: bool = False) -> None:
        self.predictor = predictor
        self.percentile = float(percentile)
        self.min_conf = float(min_conf)
        self.divisor = float(divisor)
        self.max_candidates = max_candidates
        self.fill = bool(fill)

    def select_points(self, world_points: np.ndarray, conf: np.ndarray, k: int) -> Selection:
        """Select from an already predicted point map; indices refer to its T frames."""
        k = _check_k(k)
        sets, info = points_voxel_sets(world_points, conf, self.percentile, self.min_conf, self.divisor)
        return _greedy_selection(sets, k, list(range(sets.num_frames)), info.voxel_size, self.name,
                                 sets.num_frames, self.fill)

    def select(self, frames: Sequence[Frame], k: int) -> Selection:
        """Predict points for the candidate frames, then select like :meth:`select_points`."""
        k = _check_k(k)
        if self.predictor is None:
            return _uniform_fallback(frames, k, "no world-point predictor configured")
        n = len(frames)
        candidates = uniform_indices(n, self.max_candidates) if self.max_candidates else list(range(n))
        if not candidates:
            return Selection(indices=[], method=self.name)
        shapes = {frames[i].rgb.shape for i in candidates}
        if len(shapes) != 1:
            return _uniform_fallback(frames, k, f"frames differ in size {sorted(shapes)}")
        world_points, conf = self.predictor(np.stack([frames[i].rgb for i in candidates]))
        try:
            inner = self.select_points(world_points, conf, k)
        except ValueError as error:
            return _uniform_fallback(frames, k, f"bad predictor output: {error}")
        if inner.total_voxels == 0:
            return _uniform_fallback(frames, k, "no confident world point")
        indices = [candidates[i] for i in inner.indices]
        if self.fill and len(indices) < min(k, n):
            indices = sorted(_fill_up(indices, n, k))
        inner.indices = indices
        inner.greedy_order = [candidates[i] for i in inner.greedy_order]
        inner.candidates = len(candidates)
        return inner


SELECTORS = {
    "uniform": UniformSelector,
    "space_aware": SpaceAwareSelector,
    "space_aware_incremental": SpaceAwareIncrementalSelector,
    "space_aware_points": SpaceAwarePointsSelector,
}


def make_selector(name: str, **params):
    """A selector by name (``uniform``, ``space_aware``, ``space_aware_incremental``, ``space_aware_points``).

    ``params`` go to the selector's constructor; an unknown name or parameter raises ValueError.
    """
    if name not in SELECTORS:
        raise ValueError(f"unknown frame selector {name!r}; choose from {sorted(SELECTORS)}")
    try:
        return SELECTORS[name](**params)
    except TypeError as error:
        raise ValueError(f"bad parameters for selector {name!r}: {error}") from error
