# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Read RGB-D camera frames out of recorded bags, without a ROS installation.

Engineers evaluate the model by replaying recordings, so the evaluation must accept what robots
record: rosbag2 directories (sqlite3 or mcap storage), bare ``.mcap`` files written by other tools
(e.g. ``mcap-ros2-support``), raw ``sensor_msgs/Image`` (rgb8/bgr8/rgba8/bgra8/mono8) or
``CompressedImage`` colour, 16UC1/32FC1 depth (raw or ``compressedDepth`` PNG), ``CameraInfo`` and a
pose topic (``PoseStamped``, ``PoseWithCovarianceStamped``, ``Odometry`` or ``TransformStamped``: the
camera optical frame in the world). :func:`read_frames` streams one :class:`~core.frames.Frame` per
colour image, with the depth, intrinsics and pose nearest in header time attached.

A damaged recording (truncated copy, corrupt chunk) must not lose what could be read: every frame
read before the damage is yielded first, then :class:`BagReadError` says what went wrong. An mcap
file without its footer (a recording cut short) is read front to back with the ``mcap`` stream reader
(chunk CRCs checked); a truncated sqlite3 file is refused by SQLite, so it fails at opening.
"""

from __future__ import annotations

import io
import logging
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.frames import Frame, depth_view, rgb_view
from spatial_mllm_ros.core.geometry import intrinsics_from_camera_info, pose_from_translation_quaternion

LOGGER = logging.getLogger(__name__)

DEFAULT_IMAGE_TOPIC = "/camera/color/image_raw"
DEFAULT_DEPTH_TOPIC = "/camera/depth/image_raw"
DEFAULT_INFO_TOPIC = "/camera/color/camera_info"
DEFAULT_POSE_TOPIC = "/camera/pose"

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = (
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/TransformStamped",
)
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


class BagReadError(RuntimeError):
    """The bag cannot be opened or is damaged part-way (the frames before the damage were yielded)."""


def _jazzy_typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def resolve_bag_path(bag_path: str | Path) -> Path:
    """The path to hand to ``rosbags``: a rosbag2 directory, or a bare ``.mcap``/``.db3`` file.

    A storage file inside a rosbag2 directory (with ``metadata.yaml``) resolves to the directory.
    Raises FileNotFoundError for a missing path and BagReadError for something that is not a bag.
    """
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"no bag at {path}")
    if path.is_dir():
        if not (path / "metadata.yaml").exists():
            raise BagReadError(f"{path} is a directory without metadata.yaml: not a rosbag2 bag")
        return path
    if path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").exists():
        return path.parent
    if path.suffix in (".db3", ".mcap"):
        return path
    raise BagReadError(f"{path}: not a rosbag2 directory, .mcap or .db3 file")


# ---------------------------------------------------------------------------------------------
# message decoding


def header_stamp(message, log_time_ns: int) -> float:
    """Header stamp in seconds; the bag's log time when the header stamp is zero (unset by a driver)."""
    stamp = message.header.stamp
    if stamp.sec == 0 and stamp.nanosec == 0:
        return log_time_ns / 1e9
    return stamp.sec + stamp.nanosec * 1e-9


def decode_color(message, msgtype: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Image (rgb8, bgr8, rgba8, bgra8, mono8) or a CompressedImage."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        from PIL import Image

        with Image.open(io.BytesIO(message.data.tobytes())) as image:
            return np.asarray(image.convert("RGB"))
    encoding = message.encoding.lower()
    if encoding in ("mono8", "8uc1"):
        rows = np.frombuffer(message.data, np.uint8)
        needed = message.step * (message.height - 1) + message.width
        if message.step < message.width or rows.size < needed:
            raise ValueError(f"mono8 image {message.width}x{message.height} step {message.step} does not fit "
                             f"{rows.size} bytes")
        gray = np.lib.stride_tricks.as_strided(rows, (message.height, message.width), (message.step, 1))
        return np.repeat(gray[:, :, None], 3, axis=2)
    rgb = rgb_view(message.data, message.height, message.width, message.step, encoding)
    return np.ascontiguousarray(rgb)


def decode_depth(message, msgtype: str) -> tuple[np.ndarray, float]:
    """(depth, metres per unit) from an Image (16UC1/mono16 mm, 32FC1 m) or a compressedDepth PNG."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return _decode_compressed_depth(message.format, message.data.tobytes())
    return depth_view(message.data, message.height, message.width, message.step, message.encoding,
                      bool(message.is_bigendian))


def _decode_compressed_depth(format_text: str, data: bytes) -> tuple[np.ndarray, float]:
    """image_transport "compressedDepth": a 12-byte header (format, quantisation A, B) + a 16-bit PNG."""
    from PIL import Image

    if "compresseddepth" not in format_text.lower() or len(data) < 12:
        raise ValueError(f"unsupported compressed depth format {format_text!r}")
    _, quant_a, quant_b = struct.unpack("<iff", data[:12])
    with Image.open(io.BytesIO(data[12:])) as image:
        values = np.asarray(image).astype(np.uint16)
    if format_text.strip().upper().startswith("16UC1"):
        return values, 0.001
    # 32FC1: inverse-depth quantisation, value = A / depth + B (0 = no depth)
    with np.errstate(divide="ignore"):
        depth = np.where(values > 0, quant_a / (values.astype(np.float32) - quant_b), np.nan)
    return depth.astype(np.float32), 1.0


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

    def settled(self, stamp: float) -> bool:
        """True when no sample nearer to ``stamp`` can arrive any more.

        With an unlimited tolerance (static data such as intrinsics): as soon as there is one.
        """
        if not self.active:
            return True
        if np.isinf(self.tolerance):
            return bool(self.samples)
        return self.latest >= stamp + self.tolerance

    def nearest(self, stamp: float):
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


def read_frames(
    bag_path: str | Path,
    image_topic: str = DEFAULT_IMAGE_TOPIC,
    depth_topic: str | None = DEFAULT_DEPTH_TOPIC,
    info_topic: str | None = DEFAULT_INFO_TOPIC,
    pose_topic: str | None = DEFAULT_POSE_TOPIC,
    start: float | None = None,
    end: float | None = None,
    *,
    camera_id: str = "camera",
    depth_tolerance: float = 0.02,
    pose_tolerance: float = 0.05,
    pose_offset: np.ndarray | None = None,
    max_pending: int = 64,
) -> Iterator[Frame]:
    """Stream the bag's colour frames, each with the nearest depth, camera_info and pose attached.

    Args:
        bag_path: rosbag2 directory (sqlite3 or mcap), a storage file in one, or a bare ``.mcap``.
        image_topic: Image or CompressedImage topic (``<topic>/compressed`` is used when only that
            exists).
        depth_topic: depth Image topic (or its ``/compressedDepth``); None or absent: no depth.
        info_topic: CameraInfo topic; None or absent: no intrinsics.
        pose_topic: pose topic (camera optical frame in the world); None or absent: no poses.
        start: keep images whose header stamp (s) is >= start.
        end: keep images whose header stamp (s) is <= end.
        camera_id: the ``Frame.camera_id`` to use (the QA node's camera name).
        depth_tolerance: largest header-time gap (s) for attaching a depth image.
        pose_tolerance: largest header-time gap (s) for attaching a pose. camera_info attaches at
            any gap (intrinsics are static).
        pose_offset: optional (4, 4) transform from the pose topic's frame to the camera optical
            frame (right-multiplied), for pose topics that track a body frame.
        max_pending: images held back while waiting for later depth/pose (bounds memory).

    Raises FileNotFoundError (no such path), ValueError (image topic not in the bag), and
    BagReadError (cannot open / damaged: raised after the frames read so far were yielded).
    Undecodable single messages are skipped with a logged warning.
    """
    path = resolve_bag_path(bag_path)
    source = _open_source(path)
    try:
        yield from _read_source(source, path, image_topic, {"depth": depth_topic, "info": info_topic,
                                                            "pose": pose_topic},
                                start, end, camera_id, depth_tolerance, pose_tolerance, pose_offset,
                                max_pending)
    finally:
        source.close()


# ---------------------------------------------------------------------------------------------
# message sources: rosbags (indexed, time-ordered) and an mcap record stream (damaged files)


class _RosbagsSource:
    """Messages through ``rosbags.highlevel.AnyReader`` (rosbag2 dirs, bare .mcap/.db3)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.topics: dict[str, str] | None = {c.topic: c.msgtype for c in reader.connections}
        self.failure_context = ""

    def messages(self, topics: set[str]) -> Iterator[tuple[str, str, int, bytes]]:
        connections = [c for c in self._reader.connections if c.topic in topics]
        for connection, log_time, raw in self._reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, log_time, raw

    def deserialize(self, raw: bytes, msgtype: str):
        return self._reader.deserialize(raw, msgtype)

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:  # closing a damaged bag may fail again; the cause was already reported
            LOGGER.debug("closing the bag failed", exc_info=True)


class _McapStreamSource:
    """Records of .mcap files read front to back (no summary/footer needed: truncated files work)."""

    def __init__(self, files: list[Path], open_error: Exception) -> None:
        self._files = files
        self.topics: dict[str, str] | None = None  # only known while streaming
        self.failure_context = f"rosbags could not open it ({type(open_error).__name__}: {open_error}); "
        self._typestore = _jazzy_typestore()

    def messages(self, topics: set[str]) -> Iterator[tuple[str, str, int, bytes]]:
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        for file in self._files:
            schemas: dict[int, str] = {}
            channels: dict[int, tuple[str, str]] = {}
            with file.open("rb") as stream:
                for record in StreamReader(stream, validate_crcs=True).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record.name
                        self._register(record)
                    elif isinstance(record, Channel):
                        channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                    elif isinstance(record, Message) and record.channel_id in channels:
                        topic, msgtype = channels[record.channel_id]
                        if topic in topics:
                            yield topic, msgtype, record.log_time, record.data

    def _register(self, schema) -> None:
        if schema.name in self._typestore.types or schema.encoding != "ros2msg":
            return
        from rosbags.typesys import get_types_from_msg

        self._typestore.register(get_types_from_msg(schema.data.decode(), schema.name))

    def deserialize(self, raw: bytes, msgtype: str):
        return self._typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing to close (files are closed as they are streamed)."""


def _open_source(path: Path):
    """A rosbags reader; for mcap storage rosbags cannot open, a front-to-back record stream.

    (A truncated sqlite3 file is refused by SQLite itself, so nothing of it can be salvaged.)
    """
    from rosbags.highlevel import AnyReader

    try:
        reader = AnyReader([path], default_typestore=_jazzy_typestore())
        reader.open()
        return _RosbagsSource(reader)
    except Exception as error:  # rosbags raises several unrelated types for unreadable files
        files = sorted(path.glob("*.mcap")) if path.is_dir() else [path] if path.suffix == ".mcap" else []
        if not files:
            raise BagReadError(f"cannot open bag {path}: {type(error).__name__}: {error}") from error
        LOGGER.warning("rosbags cannot open %s (%s); reading its mcap records front to back", path, error)
        return _McapStreamSource(files, error)


def _read_source(source, path, image_topic, aux_topics, start, end, camera_id, depth_tolerance,
                 pose_tolerance, pose_offset, max_pending) -> Iterator[Frame]:
    streams = {
        "depth": _Stream(depth_tolerance),
        "info": _Stream(np.inf),
        "pose": _Stream(pose_tolerance),
    }
    suffixes = {"image": "/compressed", "depth": "/compressedDepth"}
    kind_of: dict[str, str] = {}
    for kind, topic in {"image": image_topic, **aux_topics}.items():
        if not topic:
            continue
        variants = [topic, topic + suffixes[kind]] if kind in suffixes else [topic]
        if source.topics is not None:  # indexed: pick what exists
            variants = [v for v in variants if v in source.topics][:1]
        for variant in variants:
            kind_of[variant] = kind
    if source.topics is not None:
        if "image" not in kind_of.values():
            raise ValueError(f"image topic {image_topic!r} is not in {path}; topics: "
                             f"{', '.join(sorted(source.topics)) or 'none'}")
        for kind, stream in streams.items():
            stream.active = kind in kind_of.values()
    offset = None if pose_offset is None else np.asarray(pose_offset, dtype=np.float64).reshape(4, 4)
    pending: deque = deque()  # (stamp, rgb, frame_id)
    warned: set[str] = set()
    seen_topics: set[str] = set()

    def finish(image) -> Frame:
        stamp, rgb, frame_id = image
        depth = streams["depth"].nearest(stamp)
        pose = streams["pose"].nearest(stamp)
        if pose is not None and offset is not None:
            pose = pose @ offset
        depth_image, depth_scale = (None, 1.0) if depth is None else depth
        return Frame(stamp=stamp, camera_id=camera_id, rgb=rgb, depth=depth_image, depth_scale=depth_scale,
                     K=streams["info"].nearest(stamp), pose=pose, frame_id=frame_id)

    def ready() -> Iterator[Frame]:
        while pending and (len(pending) > max_pending
                           or all(stream.settled(pending[0][0]) for stream in streams.values())):
            yield finish(pending.popleft())
        oldest = pending[0][0] if pending else max(s.latest for s in streams.values())
        for stream in streams.values():
            stream.prune(oldest)

    count = 0
    try:
        for topic, msgtype, log_time, raw in source.messages(set(kind_of)):
            kind = kind_of[topic]
            seen_topics.add(topic)
            try:
                message = source.deserialize(raw, msgtype)
                stamp = header_stamp(message, log_time)
                if kind == "image":
                    if (start is not None and stamp < start) or (end is not None and stamp > end):
                        continue
                    rgb = decode_color(message, msgtype)
                    pending.append((stamp, rgb, message.header.frame_id))
                elif kind == "depth":
                    streams["depth"].add(stamp, decode_depth(message, msgtype))
                elif kind == "info":
                    streams["info"].add(stamp, intrinsics_from_camera_info(message.k))
                else:
                    streams["pose"].add(stamp, decode_pose(message, msgtype))
            except (ValueError, OSError, AttributeError, KeyError, struct.error) as error:
                reason = f"{topic}: {type(error).__name__}: {error}"
                if reason not in warned:
                    warned.add(reason)
                    LOGGER.warning("skipping undecodable message(s) on %s", reason)
                continue
            for frame in ready():
                count += 1
                yield frame
    except Exception as error:  # the storage layer failed part-way: keep what was read
        for stream in streams.values():
            stream.active = False
        for image in pending:
            count += 1
            yield finish(image)
        detail = str(error) or "unexpected end of data"
        raise BagReadError(f"bag {path} is damaged or truncated after {count} frame(s): "
                           f"{source.failure_context}{type(error).__name__}: {detail}") from error
    for stream in streams.values():
        stream.active = False
    yield from ready()
    if source.topics is None and not any(kind_of[t] == "image" for t in seen_topics):
        raise ValueError(f"image topic {image_topic!r} has no messages in {path}")
