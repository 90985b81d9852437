# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""A ROS-free transform tree with tf2's semantics, for the node (where tf2_ros is missing) and recordings.

It is fed what ``/tf`` and ``/tf_static`` carry (parent, child, stamp, translation, quaternion) and
answers "where was frame A in frame B at time t" the way ``tf2::BufferCore`` does:

- each child frame has one parent; the tree is walked up from both frames to their common ancestor;
- a dynamic edge is interpolated at t (translation linearly, rotation by slerp); asking outside the
  edge's recorded time span is an extrapolation error (tf2 never extrapolates), unless within an
  explicit tolerance, which clamps to the nearest sample;
- a static edge holds at every time; ``stamp=None`` asks at the latest time all edges share
  (tf2's ``Time(0)``);
- rejected inputs mirror tf2's: NaN values, quaternions not normalised within 0.01, a frame that is its
  own parent, empty ids, data older than the cache window.

Memory is bounded: a cache window in seconds, a cap on samples per edge and on the number of frames,
and on the length of frame ids, so a hostile ``/tf`` publisher cannot grow it without limit.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from spatial_mllm_ros.core.geometry import pose_from_translation_quaternion

# tf2's QUATERNION_NORMALIZATION_TOLERANCE: |x^2+y^2+z^2+w^2 - 1| must stay below it.
QUATERNION_NORM_TOLERANCE = 1e-2


class TransformError(LookupError):
    """A transform that cannot be stored or looked up. ``reason`` is a short key for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Edge:
    """The transforms parent <- child over time (one sample when static)."""

    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)  # x, y, z, w

    def insert(self, stamp: float, translation: np.ndarray, quaternion: np.ndarray) -> None:
        if self.static:
            self.stamps, self.translations, self.quaternions = [stamp], [translation], [quaternion]
            return
        index = bisect.bisect_right(self.stamps, stamp)
        if index > 0 and self.stamps[index - 1] == stamp:  # a republished sample replaces the old one
            self.translations[index - 1], self.quaternions[index - 1] = translation, quaternion
            return
        self.stamps.insert(index, stamp)
        self.translations.insert(index, translation)
        self.quaternions.insert(index, quaternion)

    def prune(self, oldest: float, max_samples: int) -> None:
        cut = max(bisect.bisect_left(self.stamps, oldest), len(self.stamps) - max_samples)
        if cut > 0:
            del self.stamps[:cut], self.translations[:cut], self.quaternions[:cut]

    def at(self, stamp: float, tolerance_s: float, child: str) -> np.ndarray:
        """(4, 4) parent-from-child transform at ``stamp``."""
        if self.static:
            return pose_from_translation_quaternion(self.translations[0], self.quaternions[0])
        first, last = self.stamps[0], self.stamps[-1]
        if stamp < first:
            if first - stamp > tolerance_s:
                raise TransformError(
                    "extrapolation_past", f"lookup of {self.parent} -> {child} at {stamp:.6f} is "
                    f"{first - stamp:.3f} s before the oldest transform ({first:.6f})")
            stamp = first
        elif stamp > last:
            if stamp - last > tolerance_s:
                raise TransformError(
                    "extrapolation_future", f"lookup of {self.parent} -> {child} at {stamp:.6f} is "
                    f"{stamp - last:.3f} s after the newest transform ({last:.6f})")
            stamp = last
        right = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[right] == stamp:
            return pose_from_translation_quaternion(self.translations[right], self.quaternions[right])
        left = right - 1
        t0, t1 = self.stamps[left], self.stamps[right]
        alpha = (stamp - t0) / (t1 - t0)
        translation = (1.0 - alpha) * self.translations[left] + alpha * self.translations[right]
        rotations = Rotation.from_quat(np.stack([self.quaternions[left], self.quaternions[right]]))
        quaternion = Slerp([0.0, 1.0], rotations)([alpha]).as_quat()[0]
        return pose_from_translation_quaternion(translation, quaternion)


class TfTree:
    """Transforms between named frames over time, looked up at any stamp inside the cache window.

    Args:
        cache_time_s: how long dynamic transforms are kept, relative to the newest one on each edge
            (tf2's default buffer keeps 10 s). ``math.inf`` keeps a whole recording.
        max_samples_per_edge: hard cap per edge whatever the rate.
        max_frames: hard cap on distinct child frames.
        max_frame_id_length: longer frame ids are refused.
    """

    def __init__(self, cache_time_s: float = 10.0, max_samples_per_edge: int = 10_000,
                 max_frames: int = 1_000, max_frame_id_length: int = 256) -> None:
        if not cache_time_s > 0:
            raise ValueError(f"cache_time_s must be positive, got {cache_time_s}")
        self.cache_time_s = float(cache_time_s)
        self.max_samples_per_edge = int(max_samples_per_edge)
        self.max_frames = int(max_frames)
        self.max_frame_id_length = int(max_frame_id_length)
        self._edges: dict[str, _Edge] = {}

    # ------------------------------------------------------------------ input

    def _frame_id(self, name: str, role: str) -> str:
        name = str(name).lstrip("/")  # tf2 strips a leading slash
        if not name:
            raise TransformError("empty_frame_id", f"empty {role} frame id")
        if len(name) > self.max_frame_id_length:
            raise TransformError("frame_id_too_long", f"{role} frame id of {len(name)} characters exceeds "
                                                       f"{self.max_frame_id_length}")
        return name

    def set_transform(self, parent: str, child: str, stamp: float, translation, quaternion_xyzw,
                      static: bool = False) -> None:
        """Store parent-from-child at ``stamp`` (ignored for static transforms); TransformError if refused."""
        parent = self._frame_id(parent, "parent")
        child = self._frame_id(child, "child")
        if parent == child:
            raise TransformError("self_transform", f"frame {child!r} cannot be its own parent")
        translation = np.asarray(translation, dtype=np.float64).reshape(3)
        quaternion = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
        stamp = float(stamp)
        values = np.concatenate([translation, quaternion, [stamp]])
        if not np.all(np.isfinite(values)):
            raise TransformError("nan_input", f"transform {parent} -> {child} has non-finite values")
        with np.errstate(over="ignore"):  # a huge quaternion overflows to inf, refused just below
            squared_norm = float(quaternion @ quaternion)
        if abs(squared_norm - 1.0) > QUATERNION_NORM_TOLERANCE:
            raise TransformError(
                "denormalized_quaternion", f"transform {parent} -> {child} has a quaternion of norm "
                f"{squared_norm ** 0.5:.4g} (must be 1 within tf2's tolerance)")
        quaternion = quaternion / np.linalg.norm(quaternion)
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if edge is None and len(self._edges) >= self.max_frames:
                raise TransformError("too_many_frames",
                                     f"already {self.max_frames} frames; {child!r} refused")
            # a new parent starts a new history (tf2 keeps the latest)
            edge = _Edge(parent=parent, static=static)
            self._edges[child] = edge
        elif not static and edge.stamps and stamp < edge.stamps[-1] - self.cache_time_s:
            raise TransformError("old_data", f"transform {parent} -> {child} at {stamp:.6f} is older than "
                                             f"the {self.cache_time_s:g} s cache window")
        edge.insert(stamp, translation, quaternion)
        if not static:
            edge.prune(edge.stamps[-1] - self.cache_time_s, self.max_samples_per_edge)

    def clear(self) -> None:
        """Forget everything (e.g. after time jumped back: a bag loop or a simulator reset)."""
        self._edges.clear()

    # ------------------------------------------------------------------ queries

    @property
    def frames(self) -> set[str]:
        """Every frame named as a parent or a child."""
        return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def parent_of(self, frame: str) -> str | None:
        """The frame's parent, or None for a root or an unknown frame."""
        edge = self._edges.get(str(frame).lstrip("/"))
        return edge.parent if edge else None

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to the root (a loop in the input is cut, never followed twice)."""
        chain = [frame]
        seen = {frame}
        while (edge := self._edges.get(chain[-1])) is not None and edge.parent not in seen:
            chain.append(edge.parent)
            seen.add(edge.parent)
        return chain

    def _path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames from each end up to (excluding) the common ancestor; TransformError when unconnected."""
        for name in (target, source):
            if name not in self._edges and name not in self.frames:
                raise TransformError("unknown_frame", f"frame {name!r} does not exist in the tf tree")
        source_chain, target_chain = self._chain(source), self._chain(target)
        target_index = {name: i for i, name in enumerate(target_chain)}
        for i, name in enumerate(source_chain):
            if name in target_index:
                return source_chain[:i], target_chain[:target_index[name]]
        raise TransformError("not_connected", f"frames {target!r} and {source!r} are not connected "
                                              f"(roots {target_chain[-1]!r} and {source_chain[-1]!r})")

    def latest_common_time(self, target: str, source: str) -> float | None:
        """The newest stamp every dynamic edge between the two frames has (None: all static)."""
        up_source, up_target = self._path(self._frame_id(target, "target"), self._frame_id(source, "source"))
        newest = [self._edges[child].stamps[-1] for child in up_source + up_target
                  if not self._edges[child].static]
        return min(newest) if newest else None

    def lookup(self, target: str, source: str, stamp: float | None = None,
               tolerance_s: float = 0.0) -> np.ndarray:
        """(4, 4) target-from-source transform at ``stamp`` (None: the latest common time).

        Maps points in ``source`` coordinates into ``target`` coordinates; with ``target`` a fixed
        frame and ``source`` a camera's optical frame it is the camera-to-world pose.
        """
        target = self._frame_id(target, "target")
        source = self._frame_id(source, "source")
        if target == source:
            return np.eye(4)
        up_source, up_target = self._path(target, source)
        if stamp is None:
            stamp = self.latest_common_time(target, source)
        when = 0.0 if stamp is None else float(stamp)
        ancestor_from_source = np.eye(4)
        for child in up_source:
            ancestor_from_source = self._edges[child].at(when, tolerance_s, child) @ ancestor_from_source
        ancestor_from_target = np.eye(4)
        for child in up_target:
            ancestor_from_target = self._edges[child].at(when, tolerance_s, child) @ ancestor_from_target
        return np.linalg.solve(ancestor_from_target, ancestor_from_source)

    def can_transform(self, target: str, source: str, stamp: float | None = None,
                      tolerance_s: float = 0.0) -> bool:
        """True when :meth:`lookup` would succeed."""
        try:
            self.lookup(target, source, stamp, tolerance_s)
        except TransformError:
            return False
        return True

    def first_connected(self, source: str, candidates) -> str | None:
        """The first of ``candidates`` (e.g. ``("map", "odom")``) connected to ``source``, at any time."""
        source = str(source).lstrip("/")
        for candidate in candidates:
            try:
                self._path(str(candidate).lstrip("/"), source)
            except TransformError:
                continue
            return str(candidate).lstrip("/")
        return None
