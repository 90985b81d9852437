# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Bounded, time-associating buffer of camera streams (RGB, depth, camera_info, poses).

A ROS node calls the ``add_*`` methods straight from its subscription callbacks: each call is O(1)
(validation, a deque append, byte accounting, eviction of the oldest entries), keeps a reference to the
array it is given (no copy) and never raises for bad data: it returns a status string ("accepted" or the
drop reason) and counts it. Association of RGB with depth, intrinsics and pose happens lazily when
frames are asked for, so ingest stays cheap at 30 Hz per camera.

Time handling, per stream (one RGB and one depth stream per camera, one pose track per camera plus a
shared default track):

* non-finite or negative stamp -> dropped ``invalid_stamp``;
* stamp equal to the newest one -> dropped ``duplicate``;
* stamp older than the newest by less than ``reset_jump`` -> dropped ``out_of_order``; after
  ``reset_after_drops`` of those in a row on one stream (a bag loop shorter than ``reset_jump``) the
  whole buffer is cleared and the message starts the new timeline;
* a jump of ``reset_jump`` or more is never believed from one message alone:

  - back (bag loop, simulator reset): the message is held (``pending_<kind>``) until
    ``reset_confirmations`` messages in a row agree on the new timeline (increasing, each less than
    ``reset_jump`` after the previous); then the whole buffer is cleared (``resets``,
    ``cleared_<kind>_reset``) and the held messages start the new timeline. A message on the current
    timeline first drops the held ones (``dropped_<kind>_stamp_jump``);
  - ahead (a stream resuming after a pause, or one stamp from the future): accepted, and if one of the
    next ``reset_confirmations`` messages returns to the old timeline, the entries after the jump are
    evicted (``evicted_<kind>_stamp_jump``) and the old timeline continues. So one far-future stamp
    never empties the buffer. A first message on a new stream far ahead of the whole buffer counts as
    a jump ahead too.

  Messages of the old timeline still in flight on other streams right after a reset (a stamp
  ``reset_jump`` or more ahead of the newest accepted one) are dropped ``stale_after_reset``.

Frames the QA engine could not use never enter: images failing
:func:`~spatial_mllm_ros.core.frames.frame_size_problem` (e.g. 1x1) are dropped ``unusable_size``,
a ``frame_id`` longer than :data:`MAX_FRAME_ID_CHARS` is dropped ``invalid_frame_id`` (the id's bytes
count towards the buffer's bytes), intrinsics and poses failing the sanity bounds of
:mod:`~spatial_mllm_ros.core.geometry` are dropped ``invalid_data`` or ``out_of_bounds``. Depth must
have the colour image's size and K's principal point must lie inside it (``size_mismatch``: an
unaligned depth stream, e.g. a RealSense ``depth/image_raw`` of 848x480 beside 640x480 colour, would
give wrong voxels); both are checked against the newest image at ingest and against each frame's own
image when frames are assembled.

Bounds: every camera's RGB and depth ring holds at most ``max_frames`` entries, each pose track at most
``max_poses``; the image bytes held (RGB + depth + frame ids, all cameras, held messages included,
measured on the memory each array keeps alive) stay at or below ``max_bytes`` by evicting the oldest
image or depth entry first.

Every method takes the buffer's lock, so counters and sizes read from another thread (diagnostics)
are consistent snapshots.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from spatial_mllm_ros.core.frames import Frame, frame_size_problem
from spatial_mllm_ros.core.geometry import check_intrinsics, check_pose, interpolate_poses

ACCEPTED = "accepted"
HELD = "held"  # kept aside until more messages confirm a timeline jump (see the module docstring)
KINDS = ("image", "depth", "pose", "camera_info")
DROP_REASONS = ("invalid_stamp", "invalid_data", "duplicate", "out_of_order", "too_large",
                "stale_after_reset", "stamp_jump", "unusable_size", "invalid_frame_id", "out_of_bounds",
                "size_mismatch")
EVICTION_REASONS = ("capacity", "memory", "stamp_jump")  # stamp_jump: a contradicted jump ahead
_AHEAD = "ahead"  # internal status: accepted, a jump ahead still to be confirmed
# tf frame names are short ("camera_color_optical_frame"); a longer id is a malformed message.
MAX_FRAME_ID_CHARS = 256


def held_nbytes(array: np.ndarray) -> int:
    """Bytes of memory an array keeps alive: its base buffer's size when it is a view."""
    root = array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    if isinstance(root, np.ndarray):
        return int(root.nbytes)
    try:
        return int(memoryview(root).nbytes)
    except TypeError:
        return int(array.nbytes)


@dataclass
class _Stream:
    """One time-ordered ring: entries are (stamp, payload, nbytes) tuples, oldest first."""

    capacity: int
    entries: deque = field(default_factory=deque)
    newest: float | None = None  # kept after evictions; forgotten only on reset
    backwards_streak: int = 0  # out-of-order stamps in a row
    nbytes: int = 0
    held: list = field(default_factory=list)  # (stamp, payload, nbytes) of an unconfirmed jump back
    # After a jump ahead: the old timeline's newest stamp (the stream's, or the buffer's for a new
    # stream), what ``newest`` was, and how many messages have followed the jump so far.
    jump_reference: float | None = None
    jump_restore: float | None = None
    since_jump: int = 0


def _fits(intrinsics: np.ndarray, size: tuple[int, int]) -> bool:
    """True when K's principal point lies inside an image of ``size`` (H, W): K belongs to that image."""
    height, width = size
    return 0.0 <= intrinsics[0, 2] <= width and 0.0 <= intrinsics[1, 2] <= height


class FrameBuffer:
    """Per-camera ring buffers of RGB, depth, intrinsics and poses with lazy nearest-stamp association.

    Args:
        max_frames: ring length per camera for RGB and for depth (entries).
        max_bytes: bound on image memory held (RGB + depth, all cameras together).
        max_poses: ring length per pose track.
        depth_tolerance: largest |t_rgb - t_depth| (s) for a depth image to be paired with an RGB one.
        pose_tolerance: largest distance (s) to a pose sample used without interpolation (track ends).
        max_pose_gap: longest gap (s) between two pose samples that is interpolated across.
        reset_jump: a stamp jump this many seconds back (clock reset) or ahead is a new timeline...
        reset_confirmations: ...once this many messages in a row on one stream agree on it.
        reset_after_drops: this many out-of-order stamps in a row on one stream also mean a reset.
    """

    def __init__(self, max_frames: int = 300, max_bytes: int = 512 * 1024 * 1024, max_poses: int = 10000,
                 depth_tolerance: float = 0.02, pose_tolerance: float = 0.05, max_pose_gap: float = 0.5,
                 reset_jump: float = 1.0, reset_after_drops: int = 30, reset_confirmations: int = 3) -> None:
        if max_frames < 1 or max_poses < 2 or max_bytes < 1:
            raise ValueError(f"buffer bounds must be positive (max_frames={max_frames}, "
                             f"max_poses={max_poses} >= 2, max_bytes={max_bytes})")
        if min(depth_tolerance, pose_tolerance, max_pose_gap) < 0 or reset_jump <= 0 \
                or reset_after_drops < 1 or reset_confirmations < 1:
            raise ValueError("tolerances must be >= 0, reset_jump > 0, reset_after_drops >= 1 and "
                             "reset_confirmations >= 1")
        self.max_frames = int(max_frames)
        self.max_bytes = int(max_bytes)
        self.max_poses = int(max_poses)
        self.depth_tolerance = float(depth_tolerance)
        self.pose_tolerance = float(pose_tolerance)
        self.max_pose_gap = float(max_pose_gap)
        self.reset_jump = float(reset_jump)
        self.reset_after_drops = int(reset_after_drops)
        self.reset_confirmations = int(reset_confirmations)
        self._lock = threading.RLock()
        self._images: dict[str, _Stream] = {}
        self._depths: dict[str, _Stream] = {}
        self._poses: dict[str | None, _Stream] = {}
        self._intrinsics: dict[str, np.ndarray] = {}
        self._counts: Counter = Counter()
        self._nbytes = 0
        self._newest_accepted: float | None = None
        self._after_reset = False
        self._fresh_streams: set[int] = set()

    # ----------------------------------------------------------------------------------- ingest
    def add_image(self, camera_id: str, stamp: float, rgb: np.ndarray, frame_id: str = "") -> str:
        """Buffer an (H, W, 3) uint8 RGB image (kept by reference). Returns "accepted" or the drop reason."""
        with self._lock:
            self._counts["received_image"] += 1
            if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
                    and rgb.dtype == np.uint8 and rgb.size > 0):
                return self._drop("image", "invalid_data")
            if frame_size_problem(*rgb.shape[:2]):
                return self._drop("image", "unusable_size")
            if not isinstance(frame_id, str) or len(frame_id) > MAX_FRAME_ID_CHARS:
                return self._drop("image", "invalid_frame_id")
            stream = self._images.get(camera_id)
            if stream is None:
                stream = self._images[camera_id] = _Stream(self.max_frames)
            nbytes = held_nbytes(rgb) + len(frame_id.encode("utf-8", "replace"))
            return self._insert_image_like("image", stream, stamp, (rgb, frame_id), nbytes)

    def add_depth(self, camera_id: str, stamp: float, depth: np.ndarray, scale: float | None = None) -> str:
        """Buffer an (H, W) depth image: float32 metres or uint16 units times ``scale`` metres.

        ``scale`` defaults to 1.0 for float32 and 0.001 (millimetres) for uint16.
        Returns "accepted" or the drop reason.
        """
        with self._lock:
            self._counts["received_depth"] += 1
            if not (isinstance(depth, np.ndarray) and depth.ndim == 2
                    and depth.dtype in (np.float32, np.uint16) and depth.size > 0):
                return self._drop("depth", "invalid_data")
            if scale is None:
                scale = 1.0 if depth.dtype == np.float32 else 0.001
            if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
                return self._drop("depth", "invalid_data")
            size = self._image_size(camera_id)
            if size is not None and depth.shape != size:
                return self._drop("depth", "size_mismatch")
            stream = self._depths.get(camera_id)
            if stream is None:
                stream = self._depths[camera_id] = _Stream(self.max_frames)
            return self._insert_image_like("depth", stream, stamp, (depth, float(scale)), held_nbytes(depth))

    def set_intrinsics(self, camera_id: str, intrinsics) -> str:
        """Set the (3, 3) pinhole K of a camera (from camera_info; the latest one applies to all frames)."""
        with self._lock:
            self._counts["received_camera_info"] += 1
            try:
                k = np.array(intrinsics, dtype=np.float64).reshape(3, 3)
            except (TypeError, ValueError):
                return self._drop("camera_info", "invalid_data")
            issue = check_intrinsics(k)
            if issue:
                return self._drop("camera_info", issue.reason)
            size = self._image_size(camera_id)
            if size is not None and not _fits(k, size):
                return self._drop("camera_info", "size_mismatch")
            k.setflags(write=False)
            self._intrinsics[camera_id] = k
            self._counts["accepted_camera_info"] += 1
            return ACCEPTED

    def add_pose(self, stamp: float, pose: np.ndarray, camera_id: str | None = None) -> str:
        """Buffer a (4, 4) camera-to-world pose (OpenCV camera axes) sample.

        ``camera_id=None`` feeds the shared track used by every camera without a track of its own
        (one camera, or poses already given per optical frame elsewhere). The pose is copied (64 floats).
        Returns "accepted" or the drop reason.
        """
        with self._lock:
            self._counts["received_pose"] += 1
            try:
                matrix = np.array(pose, dtype=np.float64)
            except (TypeError, ValueError):
                return self._drop("pose", "invalid_data")
            issue = check_pose(matrix)
            if issue:
                return self._drop("pose", issue.reason)
            stream = self._poses.get(camera_id)
            if stream is None:
                stream = self._poses[camera_id] = _Stream(self.max_poses)
            return self._admit("pose", stream, stamp, matrix, 0)

    def add_frame(self, frame: Frame) -> str:
        """Buffer a complete :class:`Frame` (e.g. from a bag reader): its image, depth, K and pose.

        The pose goes to the camera's own track. Returns the image's status ("accepted" or the reason).
        """
        with self._lock:
            status = self.add_image(frame.camera_id, frame.stamp, frame.rgb, frame.frame_id)
            if status != ACCEPTED:
                return status
            if frame.K is not None:
                self.set_intrinsics(frame.camera_id, frame.K)
            if frame.depth is not None:
                self.add_depth(frame.camera_id, frame.stamp, frame.depth, frame.depth_scale)
            if frame.pose is not None:
                self.add_pose(frame.stamp, frame.pose, camera_id=frame.camera_id)
            return status

    # ----------------------------------------------------------------------------------- queries
    def frames(self, camera_id: str | None = None, start: float | None = None, end: float | None = None,
               require_depth: bool = False, require_pose: bool = False) -> list[Frame]:
        """Buffered RGB frames (one camera, or all when None) with ``start <= stamp <= end``, time-sorted.

        Each frame gets the depth image nearest in time (within ``depth_tolerance``), the camera's
        latest intrinsics, and the pose interpolated at its stamp (slerp + lerp between the two
        neighbouring samples, see :func:`~spatial_mllm_ros.core.geometry.interpolate_poses`), else None.
        ``require_depth``/``require_pose`` leave out frames that got none.
        """
        with self._lock:
            cameras = [camera_id] if camera_id is not None else sorted(self._images)
            result: list[Frame] = []
            for camera in cameras:
                stream = self._images.get(camera)
                if stream is None or not stream.entries:
                    continue
                entries = [e for e in stream.entries
                           if (start is None or e[0] >= start) and (end is None or e[0] <= end)]
                if not entries:
                    continue
                stamps = np.fromiter((e[0] for e in entries), dtype=np.float64, count=len(entries))
                depths = self._associate_depth(camera, stamps)
                poses, pose_ok = self._associate_pose(camera, stamps)
                k = self._intrinsics.get(camera)
                for i, (stamp, (rgb, frame_id), _) in enumerate(entries):
                    depth = depths[i]
                    if depth is not None and depth[0].shape != rgb.shape[:2]:
                        depth = None  # a depth image of another size is not registered to this one
                    if (require_depth and depth is None) or (require_pose and not pose_ok[i]):
                        continue
                    result.append(Frame(stamp=stamp, camera_id=camera, rgb=rgb,
                                        depth=None if depth is None else depth[0],
                                        depth_scale=1.0 if depth is None else depth[1],
                                        K=k if k is not None and _fits(k, rgb.shape[:2]) else None,
                                        pose=poses[i] if pose_ok[i] else None, frame_id=frame_id))
            if camera_id is None and len(cameras) > 1:
                result.sort(key=lambda f: (f.stamp, f.camera_id))
            return result

    def latest(self, camera_id: str | None = None) -> Frame | None:
        """The newest buffered frame (of one camera, or of any), associated like :meth:`frames`."""
        with self._lock:
            cameras = [camera_id] if camera_id is not None else list(self._images)
            newest = max(((self._images[c].entries[-1][0], c) for c in cameras
                          if c in self._images and self._images[c].entries), default=None)
            if newest is None:
                return None
            frames = self.frames(newest[1], start=newest[0], end=newest[0])
            return frames[-1] if frames else None

    def pose_at(self, stamp: float, camera_id: str | None = None) -> np.ndarray | None:
        """The camera-to-world pose at ``stamp`` (interpolated), or None when no sample is close enough."""
        with self._lock:
            poses, ok = self._associate_pose(camera_id, np.array([float(stamp)]))
            return poses[0] if ok[0] else None

    def camera_ids(self) -> list[str]:
        """Cameras that have buffered RGB frames."""
        with self._lock:
            return sorted(c for c, s in self._images.items() if s.entries)

    def intrinsics(self, camera_id: str) -> np.ndarray | None:
        """The latest K of a camera, or None."""
        with self._lock:
            return self._intrinsics.get(camera_id)

    def __len__(self) -> int:
        """Number of buffered RGB frames over all cameras."""
        with self._lock:
            return sum(len(s.entries) for s in self._images.values())

    @property
    def nbytes(self) -> int:
        """Image memory held now (RGB + depth + frame ids), always <= ``max_bytes``."""
        with self._lock:
            return self._nbytes

    @property
    def counters(self) -> dict[str, int]:
        """Counts since construction, by kind (image, depth, pose, camera_info) and reason.

        Keys: ``received_<kind>``, ``accepted_<kind>``, ``dropped_<kind>_<reason>``,
        ``pending_<kind>`` (held until a timeline jump is confirmed or refuted), ``evicted_<kind>_capacity``,
        ``evicted_<kind>_memory``, ``cleared_<kind>_reset``, ``resets``, plus ``held_<kind>`` (entries
        buffered now) and ``held_bytes``.

        For every kind: received = accepted + sum of dropped + pending; for image/depth/pose: held =
        accepted - evicted - cleared.
        """
        with self._lock:
            out = {"resets": self._counts["resets"]}
            held = {"image": self._images, "depth": self._depths, "pose": self._poses}
            for kind in KINDS:
                out[f"received_{kind}"] = self._counts[f"received_{kind}"]
                out[f"accepted_{kind}"] = self._counts[f"accepted_{kind}"]
                out[f"pending_{kind}"] = sum(len(s.held) for s in held.get(kind, {}).values())
                for reason in DROP_REASONS:
                    out[f"dropped_{kind}_{reason}"] = self._counts[f"dropped_{kind}_{reason}"]
                if kind != "camera_info":
                    for reason in EVICTION_REASONS:
                        out[f"evicted_{kind}_{reason}"] = self._counts[f"evicted_{kind}_{reason}"]
                    out[f"cleared_{kind}_reset"] = self._counts[f"cleared_{kind}_reset"]
            out["held_image"] = sum(len(s.entries) for s in self._images.values())
            out["held_depth"] = sum(len(s.entries) for s in self._depths.values())
            out["held_pose"] = sum(len(s.entries) for s in self._poses.values())
            out["held_bytes"] = self._nbytes
            return out

    def clear(self) -> None:
        """Forget all buffered data and stream clocks (intrinsics and counters are kept)."""
        with self._lock:
            self._clear_streams(count_as=None)

    # ----------------------------------------------------------------------------------- internals
    def _image_size(self, camera_id: str) -> tuple[int, int] | None:
        """(H, W) of the camera's newest buffered image, or None before the first one."""
        stream = self._images.get(camera_id)
        return tuple(stream.entries[-1][1][0].shape[:2]) if stream is not None and stream.entries else None

    def _drop(self, kind: str, reason: str) -> str:
        self._counts[f"dropped_{kind}_{reason}"] += 1
        return reason

    def _classify(self, kind: str, stream: _Stream, stamp) -> str:
        """ACCEPTED, _AHEAD (a jump ahead), HELD (a jump back to confirm), or a counted drop reason.

        Resets the buffer itself only for a run of ``reset_after_drops`` out-of-order stamps; undoes a
        jump ahead that the next messages contradict.
        """
        if not isinstance(stamp, (int, float, np.floating, np.integer)) or not math.isfinite(stamp) \
                or stamp < 0:
            return self._drop(kind, "invalid_stamp")
        stamp = float(stamp)
        if stream.newest is None:
            newest = self._newest_accepted
            if newest is None or stamp < newest + self.reset_jump:
                return ACCEPTED
            if self._after_reset and id(stream) not in self._fresh_streams:
                return self._drop(kind, "stale_after_reset")
            self._note_jump_ahead(stream, reference=newest)
            return _AHEAD
        if stamp == stream.newest:
            return self._drop(kind, "duplicate")
        if stamp > stream.newest:
            if stamp - stream.newest < self.reset_jump:
                return ACCEPTED
            self._note_jump_ahead(stream, reference=stream.newest)
            return _AHEAD
        reference = stream.jump_reference
        if reference is not None and stamp > reference - self.reset_jump \
                and (stream.newest - stamp >= self.reset_jump or stamp < reference + self.reset_jump):
            self._undo_jump_ahead(kind, stream)  # the old timeline goes on: the jump was a bad stamp
            return self._classify(kind, stream, stamp)
        if stream.newest - stamp >= self.reset_jump:
            return HELD
        stream.backwards_streak += 1
        if stream.backwards_streak < self.reset_after_drops:
            return self._drop(kind, "out_of_order")
        self._clear_streams(count_as="reset")
        return ACCEPTED

    def _note_jump_ahead(self, stream: _Stream, reference: float) -> None:
        if stream.jump_reference is None:  # a second jump ahead keeps the first reference
            stream.jump_reference, stream.jump_restore = reference, stream.newest
        stream.since_jump = 0

    def _undo_jump_ahead(self, kind: str, stream: _Stream) -> None:
        """Evict the entries of a contradicted jump ahead and go back to the old timeline."""
        limit = stream.jump_reference + self.reset_jump
        while stream.entries and stream.entries[-1][0] >= limit:
            _, _, nbytes = stream.entries.pop()
            stream.nbytes -= nbytes
            self._nbytes -= nbytes
            self._counts[f"evicted_{kind}_stamp_jump"] += 1
        stream.newest = stream.jump_restore
        stream.jump_reference = stream.jump_restore = None
        stream.since_jump = 0
        self._newest_accepted = max((s.newest for group in (self._images, self._depths, self._poses)
                                     for s in group.values() if s.newest is not None), default=None)

    def _admit(self, kind: str, stream: _Stream, stamp, payload, nbytes: int) -> str:
        """Classify a stamp, then append, hold or drop the message; keeps the byte bound."""
        status = self._classify(kind, stream, stamp)
        if status in (ACCEPTED, _AHEAD):
            self._discard_held(kind, stream)  # the current timeline goes on: no jump back
            if status == ACCEPTED and stream.jump_reference is not None:
                stream.since_jump += 1
                if stream.since_jump >= self.reset_confirmations:  # the jump ahead is confirmed
                    stream.jump_reference = stream.jump_restore = None
            self._append(kind, stream, float(stamp), payload, nbytes)
            status = ACCEPTED
        elif status == HELD:
            status = self._hold(kind, stream, float(stamp), payload, nbytes)
        self._enforce_memory_bound()
        if status == HELD and not any(entry[0] == float(stamp) for entry in stream.held):
            return "stamp_jump"  # shed to keep the byte bound (already counted)
        return status

    def _hold(self, kind: str, stream: _Stream, stamp: float, payload, nbytes: int) -> str:
        if stream.held and not (0.0 < stamp - stream.held[-1][0] < self.reset_jump):
            self._discard_held(kind, stream)  # not the same new timeline: start again from this message
        stream.held.append((stamp, payload, nbytes))
        self._nbytes += nbytes
        if len(stream.held) < self.reset_confirmations:
            return HELD
        held, stream.held = stream.held, []
        self._nbytes -= sum(entry[2] for entry in held)  # _append counts them again
        self._clear_streams(count_as="reset")  # a confirmed jump back: a new timeline
        for entry in held:
            self._append(kind, stream, *entry)
        return ACCEPTED

    def _discard_held(self, kind: str, stream: _Stream) -> None:
        for _, _, nbytes in stream.held:
            self._nbytes -= nbytes
            self._drop(kind, "stamp_jump")
        stream.held = []

    def _append(self, kind: str, stream: _Stream, stamp: float, payload, nbytes: int) -> None:
        stream.entries.append((stamp, payload, nbytes))
        stream.newest = stamp
        stream.backwards_streak = 0
        stream.nbytes += nbytes
        self._nbytes += nbytes
        if self._after_reset:
            self._fresh_streams.add(id(stream))
        if self._newest_accepted is None or stamp > self._newest_accepted:
            self._newest_accepted = stamp
        self._counts[f"accepted_{kind}"] += 1
        if len(stream.entries) > stream.capacity:
            self._evict_oldest(kind, stream, "capacity")

    def _insert_image_like(self, kind: str, stream: _Stream, stamp, payload: tuple, nbytes: int) -> str:
        if nbytes > self.max_bytes:
            return self._drop(kind, "too_large")
        return self._admit(kind, stream, stamp, payload, nbytes)

    def _evict_oldest(self, kind: str, stream: _Stream, reason: str) -> None:
        _, _, nbytes = stream.entries.popleft()
        stream.nbytes -= nbytes
        self._nbytes -= nbytes
        self._counts[f"evicted_{kind}_{reason}"] += 1

    def _enforce_memory_bound(self) -> None:
        """Evict the oldest image or depth entry of any camera until the bytes fit; held messages last."""
        while self._nbytes > self.max_bytes:
            oldest = None
            for kind, streams in (("image", self._images), ("depth", self._depths)):
                for stream in streams.values():
                    if stream.entries and (oldest is None or stream.entries[0][0] < oldest[0]):
                        oldest = (stream.entries[0][0], kind, stream)
            if oldest is not None:
                self._evict_oldest(oldest[1], oldest[2], "memory")
                continue
            for kind, streams in (("image", self._images), ("depth", self._depths)):
                for stream in streams.values():
                    self._discard_held(kind, stream)
            return

    def _clear_streams(self, count_as: str | None) -> None:
        for kind, streams in (("image", self._images), ("depth", self._depths), ("pose", self._poses)):
            for stream in streams.values():
                if count_as is not None:
                    self._counts[f"cleared_{kind}_{count_as}"] += len(stream.entries)
                self._discard_held(kind, stream)
                stream.entries.clear()
                stream.newest = None
                stream.backwards_streak = 0
                stream.nbytes = 0
                stream.jump_reference = stream.jump_restore = None
                stream.since_jump = 0
        self._nbytes = 0
        self._newest_accepted = None
        self._fresh_streams.clear()
        self._after_reset = count_as is not None
        if count_as is not None:
            self._counts["resets"] += 1

    def _associate_depth(self, camera_id: str, stamps: np.ndarray) -> list[tuple | None]:
        stream = self._depths.get(camera_id)
        if stream is None or not stream.entries:
            return [None] * stamps.size
        entries = list(stream.entries)
        depth_stamps = np.fromiter((e[0] for e in entries), dtype=np.float64, count=len(entries))
        right = np.clip(np.searchsorted(depth_stamps, stamps), 0, depth_stamps.size - 1)
        left = np.clip(right - 1, 0, depth_stamps.size - 1)
        left_closer = np.abs(depth_stamps[left] - stamps) <= np.abs(depth_stamps[right] - stamps)
        nearest = np.where(left_closer, left, right)
        close = np.abs(depth_stamps[nearest] - stamps) <= self.depth_tolerance
        return [entries[j][1] if ok else None for j, ok in zip(nearest.tolist(), close.tolist(), strict=True)]

    def _associate_pose(self, camera_id: str | None, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stream = self._poses.get(camera_id) if camera_id in self._poses else self._poses.get(None)
        if stream is None or not stream.entries:
            return np.full((stamps.size, 4, 4), np.nan), np.zeros(stamps.size, dtype=bool)
        pose_stamps = np.fromiter((e[0] for e in stream.entries), dtype=np.float64, count=len(stream.entries))
        # Only the samples around the queried span are needed for the rotation fit.
        margin = max(self.max_pose_gap, self.pose_tolerance)
        lo = max(int(np.searchsorted(pose_stamps, stamps.min() - margin)) - 1, 0)
        hi = min(int(np.searchsorted(pose_stamps, stamps.max() + margin)) + 1, pose_stamps.size)
        window = np.stack([entry[1] for entry in itertools.islice(stream.entries, lo, hi)])
        return interpolate_poses(pose_stamps[lo:hi], window, stamps, self.max_pose_gap, self.pose_tolerance)
