# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Write RGB-D camera streams into a real rosbag2 directory with ``rosbags`` (no ROS install needed).

The scene maker and the tests need bags that ``ros2 bag play`` and any rosbag2 reader accept:
``sensor_msgs/msg/Image`` (rgb8 colour, 32FC1 metres or 16UC1 millimetres depth),
``sensor_msgs/msg/CameraInfo``, camera poses as ``geometry_msgs/msg/PoseStamped`` (the camera optical
frame's pose in the world frame) and/or ``tf2_msgs/msg/TFMessage`` on ``/tf`` and ``/tf_static``,
serialised as CDR with the ROS 2 Jazzy message definitions, in sqlite3 or mcap storage.

Like ``ros2 bag record --max-bag-duration``, a recording can be split by receive time into
``NAME_0.mcap``, ``NAME_1.mcap``, ... with one ``metadata.yaml`` listing them in order (rosbag2's
naming and metadata layout: ``relative_file_paths`` and per-file ``files`` entries). Messages must be
written in receive-time (log time) order, as a recorder stores them; ``/tf_static`` is stored with the
transient-local QoS its broadcasters offer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.core.geometry import pose_to_translation_quaternion

DEFAULT_TOPICS = {
    "image_topic": "/camera/color/image_raw",
    "depth_topic": "/camera/depth/image_raw",
    "info_topic": "/camera/color/camera_info",
    "pose_topic": "/camera/pose",
}
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
DEPTH_OUTPUT_ENCODINGS = ("32FC1", "16UC1")
# rosbag2 metadata version written by ROS 2 Jazzy.
ROSBAG2_VERSION = 9

_TYPES = {
    "image": "sensor_msgs/msg/Image",
    "depth": "sensor_msgs/msg/Image",
    "info": "sensor_msgs/msg/CameraInfo",
    "depth_info": "sensor_msgs/msg/CameraInfo",
    "pose": "geometry_msgs/msg/PoseStamped",
    "tf": "tf2_msgs/msg/TFMessage",
    "tf_static": "tf2_msgs/msg/TFMessage",
}
_UNLIMITED = QosTime(sec=9223372036, nsec=854775807)  # rmw's "infinite" duration, as rosbag2 stores it
# What tf2_ros' StaticTransformBroadcaster offers (and a recorder stores): reliable, transient local, depth 1.
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                    _UNLIMITED, _UNLIMITED, QosLiveliness.AUTOMATIC, _UNLIMITED, False)
TF_QOS = Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE, QosDurability.VOLATILE,
             _UNLIMITED, _UNLIMITED, QosLiveliness.AUTOMATIC, _UNLIMITED, False)


def jazzy_typestore():
    """The ROS 2 Jazzy message definitions of ``rosbags``."""
    return get_typestore(Stores.ROS2_JAZZY)


def _stamp_ns(stamp: float | int) -> int:
    """Nanoseconds from float seconds (or pass an int of nanoseconds through)."""
    if isinstance(stamp, (int, np.integer)):
        return int(stamp)
    return round(float(stamp) * 1e9)


class CameraBagWriter:
    """Writes one RGB-D camera (colour, depth, camera_info, pose, tf) into a new rosbag2 directory.

    Use as a context manager. ``stamp`` arguments are float seconds or int nanoseconds; the bag's
    log (receive) time is the header stamp unless ``log_time`` is given. ``path`` must not exist yet
    (rosbag2 rule). ``pose_topic=None`` writes no pose topic (poses go through :meth:`write_transforms`);
    ``depth_info_topic`` also writes the camera_info next to the depth stream (RealSense's
    ``aligned_depth_to_color/camera_info``); ``max_bag_duration_s`` splits the files by log time.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage: str = "sqlite3",
        image_topic: str = DEFAULT_TOPICS["image_topic"],
        depth_topic: str = DEFAULT_TOPICS["depth_topic"],
        info_topic: str = DEFAULT_TOPICS["info_topic"],
        pose_topic: str | None = DEFAULT_TOPICS["pose_topic"],
        optical_frame: str = "camera_color_optical_frame",
        world_frame: str = "map",
        depth_encoding: str = "32FC1",
        depth_info_topic: str | None = None,
        max_bag_duration_s: float | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
        if depth_encoding not in DEPTH_OUTPUT_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {DEPTH_OUTPUT_ENCODINGS}, "
                             f"got {depth_encoding!r}")
        if max_bag_duration_s is not None and not max_bag_duration_s > 0:
            raise ValueError(f"max_bag_duration_s must be positive, got {max_bag_duration_s}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"{self.path} already exists; rosbag2 writes into a new directory")
        self.typestore = jazzy_typestore()
        self.optical_frame = optical_frame
        self.world_frame = world_frame
        self.depth_encoding = depth_encoding
        self._storage = storage
        self._topics = {"image": image_topic, "depth": depth_topic, "info": info_topic, "pose": pose_topic,
                        "depth_info": depth_info_topic, "tf": "/tf", "tf_static": "/tf_static"}
        self._split_ns = None if max_bag_duration_s is None else round(max_bag_duration_s * 1e9)
        self._split_start_ns: int | None = None
        self._parts: list[Path] = []
        self._connections: dict[str, object] = {}
        self._writer = self._open_writer(self.path if self._split_ns is None else self._part(0))

    def __enter__(self) -> CameraBagWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _open_writer(self, path: Path) -> Writer:
        writer = Writer(path, version=ROSBAG2_VERSION, storage_plugin=STORAGES[self._storage])
        writer.open()
        return writer

    def _part(self, index: int) -> Path:
        self.path.mkdir(parents=True, exist_ok=index > 0)
        part = self.path / f".part_{index}"
        self._parts.append(part)
        return part

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml). Safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self._split_ns is not None:
                _merge_split_parts(self.path, self._parts)

    def _connection(self, kind: str):
        if kind not in self._connections:
            if not self._topics[kind]:
                raise ValueError(f"this writer has no {kind} topic")
            qos = {"tf_static": (TF_STATIC_QOS,), "tf": (TF_QOS,)}.get(kind, ())
            self._connections[kind] = self._writer.add_connection(
                self._topics[kind], _TYPES[kind], typestore=self.typestore, offered_qos_profiles=qos
            )
        return self._connections[kind]

    def _rotate_if_due(self, log_ns: int) -> None:
        """Start the next split file once the current one spans ``max_bag_duration_s`` of log time."""
        if self._split_ns is None:
            return
        if self._split_start_ns is None:
            self._split_start_ns = log_ns
        elif log_ns - self._split_start_ns >= self._split_ns:
            self._writer.close()
            self._writer = self._open_writer(self._part(len(self._parts)))
            self._connections.clear()
            self._split_start_ns = log_ns

    def _header(self, stamp_ns: int, frame_id: str):
        types = self.typestore.types
        seconds, nanoseconds = divmod(stamp_ns, 1_000_000_000)
        time = types["builtin_interfaces/msg/Time"](sec=seconds, nanosec=nanoseconds)
        return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def _write(self, kind: str, stamp_ns: int, message, log_time: float | int | None = None) -> None:
        if self._writer is None:
            raise ValueError("the bag writer is closed")
        log_ns = stamp_ns if log_time is None else _stamp_ns(log_time)
        self._rotate_if_due(log_ns)
        data = self.typestore.serialize_cdr(message, _TYPES[kind])
        self._writer.write(self._connection(kind), log_ns, data)

    def write_rgb(self, stamp: float | int, rgb: np.ndarray, log_time: float | int | None = None) -> None:
        """An (H, W, 3) uint8 image as rgb8."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
        self._write("image", _stamp_ns(stamp), self._image(_stamp_ns(stamp), rgb, "rgb8", rgb.shape[1] * 3),
                    log_time)

    def write_depth(self, stamp: float | int, depth_m: np.ndarray,
                    log_time: float | int | None = None) -> None:
        """An (H, W) depth image in metres, stored as 32FC1 metres or 16UC1 millimetres (0 = invalid)."""
        depth_m = np.asarray(depth_m, dtype=np.float32)
        if depth_m.ndim != 2:
            raise ValueError(f"depth must be (H, W), got {depth_m.shape}")
        if self.depth_encoding == "16UC1":
            millimetres = np.where(np.isfinite(depth_m), np.rint(depth_m * 1000.0), 0.0)
            data = np.clip(millimetres, 0, 65535).astype("<u2")
            step = depth_m.shape[1] * 2
        else:
            data = depth_m.astype("<f4")
            step = depth_m.shape[1] * 4
        self._write("depth", _stamp_ns(stamp), self._image(_stamp_ns(stamp), data, self.depth_encoding, step),
                    log_time)

    def _image(self, stamp_ns: int, array: np.ndarray, encoding: str, step: int):
        return self.typestore.types["sensor_msgs/msg/Image"](
            header=self._header(stamp_ns, self.optical_frame),
            height=array.shape[0],
            width=array.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8),
        )

    def write_camera_info(self, stamp: float | int, intrinsics: np.ndarray, width: int, height: int,
                          log_time: float | int | None = None) -> None:
        """A pinhole CameraInfo without distortion (plumb_bob, zero coefficients), on both info topics."""
        types = self.typestore.types
        k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
        projection = np.zeros((3, 4))
        projection[:, :3] = k
        message = types["sensor_msgs/msg/CameraInfo"](
            header=self._header(_stamp_ns(stamp), self.optical_frame),
            height=int(height),
            width=int(width),
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k.reshape(9).copy(),
            r=np.eye(3).reshape(9),
            p=projection.reshape(12),
            binning_x=0,
            binning_y=0,
            roi=types["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
            ),
        )
        self._write("info", _stamp_ns(stamp), message, log_time)
        if self._topics["depth_info"]:
            self._write("depth_info", _stamp_ns(stamp), message, log_time)

    def write_transforms(self, stamp: float | int, transforms, *, static: bool = False,
                         log_time: float | int | None = None) -> None:
        """One TFMessage of (parent, child, (4, 4) parent-from-child) transforms on /tf or /tf_static."""
        types = self.typestore.types
        stamp_ns = _stamp_ns(stamp)
        entries = []
        for parent, child, transform in transforms:
            translation, quaternion = pose_to_translation_quaternion(np.asarray(transform, dtype=np.float64))
            entries.append(types["geometry_msgs/msg/TransformStamped"](
                header=self._header(stamp_ns, parent), child_frame_id=child,
                transform=types["geometry_msgs/msg/Transform"](
                    translation=types["geometry_msgs/msg/Vector3"](
                        x=translation[0], y=translation[1], z=translation[2]),
                    rotation=types["geometry_msgs/msg/Quaternion"](
                        x=quaternion[0], y=quaternion[1], z=quaternion[2], w=quaternion[3]))))
        message = types["tf2_msgs/msg/TFMessage"](transforms=entries)
        self._write("tf_static" if static else "tf", stamp_ns, message, log_time)

    def write_pose(self, stamp: float | int, pose: np.ndarray) -> None:
        """The (4, 4) camera-to-world pose of the optical frame as a PoseStamped in the world frame."""
        types = self.typestore.types
        translation, quaternion = pose_to_translation_quaternion(np.asarray(pose, dtype=np.float64))
        message = types["geometry_msgs/msg/PoseStamped"](
            header=self._header(_stamp_ns(stamp), self.world_frame),
            pose=types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](
                    x=translation[0], y=translation[1], z=translation[2]
                ),
                orientation=types["geometry_msgs/msg/Quaternion"](
                    x=quaternion[0], y=quaternion[1], z=quaternion[2], w=quaternion[3]
                ),
            ),
        )
        self._write("pose", _stamp_ns(stamp), message)

    def write_frame(
        self,
        stamp: float | int,
        rgb: np.ndarray,
        depth_m: np.ndarray | None = None,
        intrinsics: np.ndarray | None = None,
        pose: np.ndarray | None = None,
    ) -> None:
        """Everything of one frame at one stamp: colour, then depth, camera_info and pose if given."""
        self.write_rgb(stamp, rgb)
        if depth_m is not None:
            self.write_depth(stamp, depth_m)
        if intrinsics is not None:
            self.write_camera_info(stamp, intrinsics, rgb.shape[1], rgb.shape[0])
        if pose is not None:
            self.write_pose(stamp, pose)


def _merge_split_parts(path: Path, parts: list[Path]) -> None:
    """Move each part's storage file to ``NAME_i.ext`` and write one metadata.yaml listing them in order."""
    import yaml

    name = path.name
    merged = None
    topics: dict[str, dict] = {}
    for index, part in enumerate(parts):
        info = yaml.safe_load((part / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        (storage_file,) = [p for p in part.iterdir() if p.suffix in (".mcap", ".db3")]
        target = path / f"{name}_{index}{storage_file.suffix}"
        storage_file.rename(target)
        shutil.rmtree(part)
        for entry in info["topics_with_message_count"]:
            known = topics.setdefault(entry["topic_metadata"]["name"],
                                      {"topic_metadata": entry["topic_metadata"], "message_count": 0})
            known["message_count"] += entry["message_count"]
        file_entry = {"path": target.name, "starting_time": info["starting_time"],
                      "duration": info["duration"], "message_count": info["message_count"]}
        if merged is None:
            merged = dict(info, relative_file_paths=[], files=[], message_count=0)
        merged["relative_file_paths"].append(target.name)
        merged["files"].append(file_entry)
        merged["message_count"] += info["message_count"]
    start = min(f["starting_time"]["nanoseconds_since_epoch"] for f in merged["files"])
    end = max(f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"]
              for f in merged["files"])
    merged["starting_time"] = {"nanoseconds_since_epoch": start}
    merged["duration"] = {"nanoseconds": end - start}
    merged["topics_with_message_count"] = list(topics.values())
    text = yaml.safe_dump({"rosbag2_bagfile_information": merged}, sort_keys=False)
    (path / "metadata.yaml").write_text(text)
