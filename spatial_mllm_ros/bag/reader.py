# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Read RGB-D camera frames out of recorded bags, without a ROS installation.

Engineers evaluate the model by replaying what robots record, so the reader takes recordings as they
come (storage quirks: :mod:`spatial_mllm_ros.bag.recording`) and finds its streams in them:

- colour: an ``Image`` (rgb8/bgr8/rgba8/bgra8/mono8) or ``CompressedImage`` (JPEG/PNG) topic with a
  matching ``camera_info``; depth: 16UC1/32FC1 (raw or ``compressedDepth``), aligned-to-colour
  preferred; intrinsics: the colour stream's ``CameraInfo``;
- camera poses: from ``/tf`` + ``/tf_static`` when the recording has them (the chain from a fixed
  frame, ``map`` else ``odom`` else ``fixed_frame``, to each image's ``header.frame_id``,
  interpolated at the image stamp with tf2's semantics: :class:`~core.tf_tree.TfTree`, the tree the
  node uses for live tf), else from a ``PoseStamped`` / ``PoseWithCovarianceStamped`` /
  ``TransformStamped`` / ``Odometry`` topic (the camera optical frame in the world).

Topics left at :data:`AUTO` are discovered and the choice is reported (``details``); only truly
ambiguous recordings (several cameras) ask for ``camera``. :func:`read_frames` streams one
:class:`~core.frames.Frame` per colour image with the nearest depth, intrinsics and pose attached;
images wait (bounded) for later depth and for tf coverage past their stamp, since tf is often
recorded after the image it applies to.

A damaged recording must not lose what could be read: every readable frame (also from the intact
split files after a damaged one) is yielded first, then :class:`BagReadError` says what was lost.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_mllm_ros.bag.recording import BagReadError, NotABagError, Recording, open_recording
from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.geometry import intrinsics_from_camera_info, pose_from_translation_quaternion
from spatial_mllm_ros.core.imaging import (
    ImageDecodeError,
    decode_compressed_color,
    decode_compressed_depth,
)
from spatial_mllm_ros.core.imaging import decode_color as decode_color_fields
from spatial_mllm_ros.core.imaging import decode_depth as decode_depth_fields
from spatial_mllm_ros.core.tf_tree import TfTree, TransformError

__all__ = ["AUTO", "BagReadError", "NotABagError", "TopicChoice", "choose_topics", "probe_bag", "read_frames",
           "resolve_bag_path"]

LOGGER = logging.getLogger(__name__)

AUTO = "auto"  # a topic argument left to discovery
DEFAULT_IMAGE_TOPIC = "/camera/color/image_raw"
DEFAULT_DEPTH_TOPIC = "/camera/depth/image_raw"
DEFAULT_INFO_TOPIC = "/camera/color/camera_info"
DEFAULT_POSE_TOPIC = "/camera/pose"

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = (
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/TransformStamped",
    "nav_msgs/msg/Odometry",
)
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_TOPICS = ("/tf", "/tf_static")
FIXED_FRAMES = ("map", "odom")
TF_POSE = "tf"  # TopicChoice.pose_kind of poses from /tf + /tf_static
# Transforms older than this (relative to the newest on their edge) are dropped; images wait at most
# max_pending frames, so a minute of tf covers any of them.
TF_CACHE_S = 60.0

_NOT_COLOUR = re.compile(r"depth|infra|/ir(?:/|$|_)|disparity|confidence|thermal", re.I)
_COLOUR_WORDS = re.compile(r"colou?r|rgb", re.I)


def resolve_bag_path(bag_path: str | Path) -> Path:
    """The recording's directory (or the bare storage file); FileNotFoundError / NotABagError."""
    recording = open_recording(bag_path)
    recording.close()
    return recording.path


# ---------------------------------------------------------------------------------------------
# topic choice


@dataclass
class TopicChoice:
    """The streams read from a recording and why (``notes``)."""

    image: str
    depth: str | None = None
    info: str | None = None
    pose: str | None = None  # a pose topic, or the tf topics joined by "+"
    pose_kind: str | None = None  # "tf", "topic" or None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line: what is read from where."""
        pose = {TF_POSE: f"tf ({self.pose})", "topic": self.pose, None: "none"}[self.pose_kind]
        return (f"colour {self.image}, depth {self.depth or 'none'}, camera_info {self.info or 'none'}, "
                f"poses {pose}")


def _base_topic(topic: str) -> str:
    for suffix in ("/compressedDepth", "/compressed"):
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


def _namespace(topic: str) -> str:
    return topic.rsplit("/", 1)[0]


def _camera_root(colour_base: str) -> str:
    """``/camera/camera`` of ``/camera/camera/color/image_raw`` (the driver's namespace)."""
    return _namespace(_namespace(colour_base))


def _in_camera(topic: str, camera: str) -> bool:
    return f"/{camera.strip('/')}/" in topic + "/"


def _pick_variant(topics: dict[str, str], base: str, suffix: str) -> str | None:
    """The raw topic of a stream when recorded, else its compressed variant."""
    for name in (base, base + suffix):
        if name in topics:
            return name
    return None


def _listing(topics: dict[str, str]) -> str:
    return ", ".join(f"{name} ({msgtype})" for name, msgtype in sorted(topics.items())) or "none"


def choose_topics(topics: dict[str, str], image_topic: str | None = AUTO, depth_topic: str | None = AUTO,
                  info_topic: str | None = AUTO, pose_topic: str | None = AUTO, *, camera: str | None = None,
                  where: str = "the recording") -> TopicChoice:
    """Decide which topics to read (see the module docstring); ValueError when it cannot.

    A topic argument is :data:`AUTO` (discover), a topic name, or None (do not read that stream).
    """
    notes: list[str] = []
    images = {t: m for t, m in topics.items() if m in IMAGE_TYPES}
    if image_topic in (AUTO, None):
        image = _discover_colour(topics, images, camera, where, notes)
    else:
        image = _pick_variant(images, image_topic, "/compressed")
        if image is None:
            raise ValueError(f"image topic {image_topic!r} is not in {where}; image topics: "
                             f"{', '.join(sorted(images)) or 'none'} (all topics: {_listing(topics)})")
    base = _base_topic(image)
    root = _camera_root(base)

    depth = None
    if depth_topic == AUTO:
        depth = _discover_depth(images, root, notes)
    elif depth_topic:
        depth = _pick_variant(images, depth_topic, "/compressedDepth")
        if depth is None:
            notes.append(f"depth topic {depth_topic!r} is not in the recording: frames have no depth")

    info = None
    infos = sorted(t for t, m in topics.items() if m == INFO_TYPE)
    if info_topic == AUTO:
        own = _namespace(base) + "/camera_info"
        near = [t for t in infos if t.startswith(root + "/") and not _NOT_COLOUR.search(t)]
        if own in infos:
            info = own
        elif len(near) == 1 or len(infos) == 1:
            info = near[0] if len(near) == 1 else infos[0]
    elif info_topic:
        info = info_topic if info_topic in infos else None
        if info is None:
            notes.append(f"camera_info topic {info_topic!r} is not in the recording: no intrinsics")

    pose, pose_kind = _choose_pose(topics, pose_topic, notes)
    choice = TopicChoice(image=image, depth=depth, info=info, pose=pose, pose_kind=pose_kind, notes=notes)
    return choice


def _discover_colour(topics, images, camera, where, notes) -> str:
    bases: dict[str, str] = {}
    for topic in sorted(images):
        base = _base_topic(topic)
        if topic.endswith("/compressedDepth") or _NOT_COLOUR.search(base):
            continue
        bases.setdefault(base, _pick_variant(images, base, "/compressed"))
    infos = {t for t, m in topics.items() if m == INFO_TYPE}
    with_info = [b for b in bases if _namespace(b) + "/camera_info" in infos]
    pool = with_info or list(bases)
    if camera:
        pool = [b for b in pool if _in_camera(b, camera)]
        if not pool:
            raise ValueError(f"no colour image topic of camera {camera!r} in {where}; colour topics: "
                             f"{', '.join(bases[b] for b in bases) or 'none'}")
    if len(pool) > 1:
        coloured = [b for b in pool if _COLOUR_WORDS.search(b)]
        pool = coloured if len(coloured) == 1 else pool
    if len(pool) > 1:
        raise ValueError(f"{where} has several cameras ({', '.join(bases[b] for b in pool)}): pass --camera "
                         "NAME (a namespace in the topic names) or --image-topic")
    if not pool:
        raise ValueError(f"{where} has no colour image topic (sensor_msgs Image or CompressedImage); "
                         f"topics: {_listing(topics)}")
    chosen = bases[pool[0]]
    if not with_info:
        notes.append(f"colour topic {chosen} has no matching camera_info")
    return chosen


def _discover_depth(images, root, notes) -> str | None:
    candidates = {}
    for topic in images:
        base = _base_topic(topic)
        if "depth" not in base.lower() or (root and not base.startswith(root + "/")):
            continue
        candidates.setdefault(base, _pick_variant(images, base, "/compressedDepth"))
    if not candidates:
        return None

    def rank(base: str) -> tuple:
        lowered = base.lower()
        aligned = 0 if "aligned_depth_to_colo" in lowered else 1 if "registered" in lowered else 2
        return aligned, base.count("/"), base

    chosen = candidates[min(candidates, key=rank)]
    if len(candidates) > 1:
        notes.append(f"depth from {chosen} (of {', '.join(sorted(candidates.values()))})")
    return chosen


def _choose_pose(topics, pose_topic, notes) -> tuple[str | None, str | None]:
    tf_topics = [t for t in TF_TOPICS if topics.get(t) == TF_TYPE]
    if pose_topic is None:
        return None, None
    if pose_topic != AUTO:
        if pose_topic in TF_TOPICS or topics.get(pose_topic) == TF_TYPE:
            chosen = sorted(set(tf_topics) | ({pose_topic} if pose_topic in topics else set()))
            return "+".join(chosen), TF_POSE
        msgtype = topics.get(pose_topic)
        if msgtype is None:
            notes.append(f"pose topic {pose_topic!r} is not in the recording: frames have no poses")
            return None, None
        if msgtype not in POSE_TYPES:
            raise ValueError(f"pose topic {pose_topic!r} carries {msgtype}, not one of "
                             f"{', '.join(POSE_TYPES)} or {TF_TYPE}")
        return pose_topic, "topic"
    if tf_topics:
        return "+".join(tf_topics), TF_POSE
    for types in (POSE_TYPES[:3], POSE_TYPES[3:]):
        found = sorted(t for t, m in topics.items() if m in types)
        if len(found) > 1:
            named = [t for t in found if "camera" in t]
            found = named if len(named) == 1 else found
        if len(found) > 1:
            raise ValueError(f"several pose topics ({', '.join(found)}): pass --pose-topic")
        if found:
            return found[0], "topic"
    return None, None


# ---------------------------------------------------------------------------------------------
# message decoding


def header_stamp(message, log_time_ns: int) -> float:
    """Header stamp in seconds; the bag's log time when the header stamp is zero (unset by a driver)."""
    stamp = message.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        return log_time_ns / 1e9
    return stamp.sec + stamp.nanosec * 1e-9


def decode_color(message, msgtype: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image or CompressedImage message (the core decoder's checks)."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return decode_compressed_color(message.format, message.data)
    rgb = decode_color_fields(message.encoding, message.height, message.width, message.step, message.data)
    return np.ascontiguousarray(rgb)


def decode_depth(message, msgtype: str) -> tuple[np.ndarray, float]:
    """(depth, metres per unit) of an Image (16UC1/mono16 mm, 32FC1 m) or compressedDepth message."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return decode_compressed_depth(message.format, message.data)
    return decode_depth_fields(message.encoding, message.height, message.width, message.step, message.data,
                               bool(message.is_bigendian))


def decode_pose(message, msgtype: str) -> np.ndarray:
    """(4, 4) pose from PoseStamped, PoseWithCovarianceStamped, Odometry or TransformStamped."""
    if msgtype == "geometry_msgs/msg/TransformStamped":
        t, q = message.transform.translation, message.transform.rotation
    else:
        pose = message.pose if msgtype == "geometry_msgs/msg/PoseStamped" else message.pose.pose
        t, q = pose.position, pose.orientation
    return pose_from_translation_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


# ---------------------------------------------------------------------------------------------
# association


@dataclass
class _Stream:
    """Recent samples of one auxiliary topic (depth, camera_info or pose), in header-time order."""

    tolerance: float
    samples: deque = field(default_factory=deque)  # (stamp, payload)
    latest: float = -np.inf
    active: bool = True  # False once the topic cannot deliver anything newer (end of bag / absent)

    def add(self, stamp: float, payload) -> None:
        self.samples.append((stamp, payload))
        self.latest = max(self.latest, stamp)

    def settled(self, stamp: float, frame_id: str = "") -> bool:
        """True when no sample nearer to ``stamp`` can arrive any more.

        With an unlimited tolerance (static data such as intrinsics): as soon as there is one.
        """
        if not self.active:
            return True
        if np.isinf(self.tolerance):
            return bool(self.samples)
        return self.latest >= stamp + self.tolerance

    def nearest(self, stamp: float, frame_id: str = ""):
        """The payload nearest in time within the tolerance, or None."""
        best = None
        for sample_stamp, payload in self.samples:
            gap = abs(sample_stamp - stamp)
            if gap <= self.tolerance and (best is None or gap < best[0]):
                best = (gap, payload)
        return None if best is None else best[1]

    def prune(self, before: float) -> None:
        """Forget samples too old for any image at or after ``before`` (keeps the newest one).

        Static data (unlimited tolerance) keeps only its few newest samples.
        """
        if np.isinf(self.tolerance):
            while len(self.samples) > 4:
                self.samples.popleft()
        while len(self.samples) > 1 and self.samples[1][0] < before - self.tolerance:
            self.samples.popleft()


class _TfPoses:
    """Camera poses from /tf + /tf_static: fixed frame -> image frame at the image stamp."""

    def __init__(self, fixed_frame: str | None, tolerance: float, wait_s: float) -> None:
        self.tree = TfTree(cache_time_s=TF_CACHE_S, max_samples_per_edge=100_000)
        self.explicit = fixed_frame.lstrip("/") if fixed_frame else None
        self.chosen: str | None = None
        self.tolerance = tolerance
        self.wait_s = wait_s
        self.newest = -np.inf  # newest dynamic transform stamp seen
        self.active = True
        self.problems: Counter = Counter()
        self.latest = -np.inf  # for the reader's pruning (never pruned: the tree bounds itself)

    def add(self, message, static: bool) -> None:
        for transform in message.transforms:
            stamp = transform.header.stamp.sec + transform.header.stamp.nanosec * 1e-9
            t, q = transform.transform.translation, transform.transform.rotation
            try:
                self.tree.set_transform(transform.header.frame_id, transform.child_frame_id, stamp,
                                        (t.x, t.y, t.z), (q.x, q.y, q.z, q.w), static=static)
            except TransformError as error:
                self.problems[f"tf refused: {error}"] += 1
                continue
            if not static:
                self.newest = max(self.newest, stamp)

    def _fixed(self, frame_id: str) -> str | None:
        if self.explicit or self.chosen:
            return self.explicit or self.chosen
        return self.tree.first_connected(frame_id, FIXED_FRAMES) if frame_id else None

    def settled(self, stamp: float, frame_id: str) -> bool:
        if not self.active or self.newest > stamp + self.wait_s:
            return True
        fixed = self._fixed(frame_id)
        if fixed is None:
            return False
        try:
            latest = self.tree.latest_common_time(fixed, frame_id)
        except TransformError:
            return False
        return latest is None or latest >= stamp

    def nearest(self, stamp: float, frame_id: str):
        fixed = self._fixed(frame_id)
        if fixed is None:
            self.problems[f"no {' or '.join(FIXED_FRAMES)} frame connected to "
                          f"{frame_id or '(empty frame_id)'} (pass --fixed-frame)"] += 1
            return None
        self.chosen = self.chosen or (None if self.explicit else fixed)
        try:
            return self.tree.lookup(fixed, frame_id, stamp, tolerance_s=self.tolerance)
        except TransformError as error:
            self.problems[f"{error.reason}: {fixed} -> {frame_id}"] += 1
            return None

    def prune(self, before: float) -> None:
        """The tree bounds its own memory (cache window, samples per edge)."""


def probe_bag(bag_path: str | Path, image_topic: str | None = AUTO, depth_topic: str | None = AUTO,
              info_topic: str | None = AUTO, pose_topic: str | None = AUTO, *,
              camera: str | None = None) -> TopicChoice:
    """The topics :func:`read_frames` would read, without reading any message (fails fast).

    Raises FileNotFoundError, NotABagError / ValueError (bad input) and BagReadError (no readable file).
    """
    recording = open_recording(bag_path)
    try:
        topics = recording.topics
    finally:
        recording.close()
    if not topics and recording.damage:
        raise BagReadError(f"bag {recording.path} cannot be read: {'; '.join(recording.damage)}")
    return choose_topics(topics, image_topic, depth_topic, info_topic, pose_topic, camera=camera,
                         where=str(recording.path))


def read_frames(
    bag_path: str | Path,
    image_topic: str | None = AUTO,
    depth_topic: str | None = AUTO,
    info_topic: str | None = AUTO,
    pose_topic: str | None = AUTO,
    start: float | None = None,
    end: float | None = None,
    *,
    camera_id: str = "camera",
    depth_tolerance: float = 0.02,
    pose_tolerance: float = 0.05,
    pose_offset: np.ndarray | None = None,
    max_pending: int = 64,
    camera: str | None = None,
    fixed_frame: str | None = None,
    tf_wait_s: float = 1.0,
    details: dict | None = None,
) -> Iterator[Frame]:
    """Stream the bag's colour frames, each with the nearest depth, camera_info and pose attached.

    Args:
        bag_path: rosbag2 directory (sqlite3 or mcap, split or not), a folder of split files without
            ``metadata.yaml``, a storage file in one, or a bare ``.mcap``/``.db3``.
        image_topic: Image or CompressedImage topic (``<topic>/compressed`` is used when only that
            exists); :data:`AUTO` discovers it.
        depth_topic: depth Image topic (or its ``/compressedDepth``); AUTO discovers it; None: no depth.
        info_topic: CameraInfo topic; AUTO: the colour stream's; None: no intrinsics.
        pose_topic: a pose topic, ``/tf`` (poses from /tf + /tf_static), AUTO (tf when recorded, else
            the one pose topic) or None (no poses).
        start: keep images whose header stamp (s) is >= start.
        end: keep images whose header stamp (s) is <= end.
        camera_id: the ``Frame.camera_id`` to use (the QA node's camera name).
        depth_tolerance: largest header-time gap (s) for attaching a depth image.
        pose_tolerance: largest header-time gap (s) for attaching a pose topic sample; for tf, how far
            past the recorded transforms a lookup may clamp (tf2 itself never extrapolates).
            camera_info attaches at any gap (intrinsics are static).
        pose_offset: optional (4, 4) transform from the pose topic's frame to the camera optical
            frame (right-multiplied), for pose topics that track a body frame (not used with tf).
        max_pending: images held back while waiting for later depth/pose/tf (bounds memory).
        camera: namespace that picks one camera when discovery finds several.
        fixed_frame: tf frame the poses are expressed in (default: ``map``, else ``odom``).
        tf_wait_s: how far (s, in header time) dynamic tf may run past an image before its pose is
            resolved with what has arrived.
        details: a dict filled with what was read: ``topics`` (a :class:`TopicChoice`), ``files``,
            ``warnings`` and ``skipped`` (undecodable messages per reason).

    Raises FileNotFoundError (no such path), ValueError / NotABagError (bad input: no such image
    topic, several cameras, no decodable image) and BagReadError (damaged data: raised after every
    readable frame was yielded). Undecodable single messages are skipped with a logged warning.
    """
    recording = open_recording(bag_path)
    try:
        yield from _read_recording(recording, image_topic, depth_topic, info_topic, pose_topic, start, end,
                                   camera_id, depth_tolerance, pose_tolerance, pose_offset, max_pending,
                                   camera, fixed_frame, tf_wait_s, details)
    finally:
        recording.close()


def _read_recording(recording, image_topic, depth_topic, info_topic, pose_topic, start, end, camera_id,
                    depth_tolerance, pose_tolerance, pose_offset, max_pending, camera, fixed_frame, tf_wait_s,
                    details) -> Iterator[Frame]:
    topics = recording.topics
    if not topics and recording.damage:
        raise BagReadError(f"bag {recording.path} cannot be read: {'; '.join(recording.damage)}")
    choice = choose_topics(topics, image_topic, depth_topic, info_topic, pose_topic, camera=camera,
                           where=str(recording.path))
    for note in choice.notes:
        LOGGER.info("%s: %s", recording.path, note)
    LOGGER.info("%s: %s", recording.path, choice.describe())
    details = {} if details is None else details
    details.update(topics=choice, files=[str(p) for p in recording.files], warnings=list(recording.warnings),
                   skipped={})
    yield from _read(recording, choice, topics, start, end, camera_id, depth_tolerance, pose_tolerance,
                     pose_offset, max_pending, fixed_frame, tf_wait_s, details)


def _read(recording: Recording, choice: TopicChoice, topics, start, end, camera_id, depth_tolerance,
          pose_tolerance, pose_offset, max_pending, fixed_frame, tf_wait_s, details) -> Iterator[Frame]:
    tf = _TfPoses(fixed_frame, pose_tolerance, tf_wait_s) if choice.pose_kind == TF_POSE else None
    streams = {"depth": _Stream(depth_tolerance), "info": _Stream(np.inf),
               "pose": tf if tf is not None else _Stream(pose_tolerance)}
    kind_of = {choice.image: "image"}
    if choice.depth:
        kind_of[choice.depth] = "depth"
    if choice.info:
        kind_of[choice.info] = "info"
    if tf is not None:
        kind_of.update({t: "tf" for t in choice.pose.split("+")})
    elif choice.pose:
        kind_of[choice.pose] = "pose"
    streams["depth"].active = bool(choice.depth)
    streams["info"].active = bool(choice.info)
    streams["pose"].active = bool(choice.pose)
    offset = None if pose_offset is None else np.asarray(pose_offset, dtype=np.float64).reshape(4, 4)
    pending: deque = deque()  # (stamp, rgb, frame_id)
    skipped: Counter = Counter()
    details["skipped"] = skipped
    images_seen = 0

    def finish(image) -> Frame:
        stamp, rgb, frame_id = image
        depth = streams["depth"].nearest(stamp)
        pose = streams["pose"].nearest(stamp, frame_id)
        if pose is not None and offset is not None and tf is None:
            pose = pose @ offset
        depth_image, depth_scale = (None, 1.0) if depth is None else depth
        return Frame(stamp=stamp, camera_id=camera_id, rgb=rgb, depth=depth_image, depth_scale=depth_scale,
                     K=streams["info"].nearest(stamp), pose=pose, frame_id=frame_id)

    def ready() -> Iterator[Frame]:
        while pending and (len(pending) > max_pending
                           or all(s.settled(pending[0][0], pending[0][2]) for s in streams.values())):
            yield finish(pending.popleft())
        oldest = pending[0][0] if pending else max(s.latest for s in streams.values())
        for stream in streams.values():
            stream.prune(oldest)

    count = 0
    for topic, msgtype, log_time, raw in recording.messages(set(kind_of)):
        kind = kind_of[topic]
        try:
            message = recording.deserialize(raw, msgtype)
            if kind == "tf":
                tf.add(message, static=topic.endswith("tf_static"))
                continue
            stamp = header_stamp(message, log_time)
            if kind == "image":
                images_seen += 1
                if (start is not None and stamp < start) or (end is not None and stamp > end):
                    continue
                pending.append((stamp, decode_color(message, msgtype), message.header.frame_id.lstrip("/")))
            elif kind == "depth":
                streams["depth"].add(stamp, decode_depth(message, msgtype))
            elif kind == "info":
                streams["info"].add(stamp, intrinsics_from_camera_info(message.k))
            else:
                streams["pose"].add(stamp, decode_pose(message, msgtype))
        except (ImageDecodeError, ValueError, AttributeError, KeyError, IndexError) as error:
            reason = f"{topic}: {error}"
            if reason not in skipped:
                LOGGER.warning("skipping undecodable message(s) on %s", reason)
            skipped[reason] += 1
            continue
        for frame in ready():
            count += 1
            yield frame
    for stream in streams.values():
        stream.active = False
    for frame in ready():
        count += 1
        yield frame
    if tf is not None and tf.problems:
        problems = "; ".join(f"{reason} ({n} frame(s))" for reason, n in tf.problems.most_common(3))
        LOGGER.warning("%s: frames without a tf pose: %s", recording.path, problems)
        details["warnings"].append(f"frames without a tf pose: {problems}")
    details["warnings"].extend(recording.damage)
    if recording.damage:
        raise BagReadError(f"bag {recording.path} is damaged or truncated ({'; '.join(recording.damage)}); "
                           f"{count} frame(s) were read from its readable part")
    if count == 0 and images_seen:
        image_problems = [f"{reason} ({n} message(s))" for reason, n in skipped.items()
                          if reason.startswith(choice.image + ":")]
        if image_problems:
            raise ValueError(f"no image of {choice.image} could be decoded: {'; '.join(image_problems)}")
