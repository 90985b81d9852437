# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Write RGB-D camera streams into a real rosbag2 directory with ``rosbags`` (no ROS install needed).

The scene maker and the tests need bags that ``ros2 bag play`` and any rosbag2 reader accept:
``sensor_msgs/msg/Image`` (rgb8 colour, 32FC1 metres or 16UC1 millimetres depth),
``sensor_msgs/msg/CameraInfo`` and ``geometry_msgs/msg/PoseStamped`` (the camera optical frame's
pose in the world frame), serialised as CDR with the ROS 2 Jazzy message definitions, in sqlite3
or mcap storage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    "info": "sensor_msgs/msg/CameraInfo",
    "pose": "geometry_msgs/msg/PoseStamped",
}


def jazzy_typestore():
    """The ROS 2 Jazzy message definitions of ``rosbags``."""
    return get_typestore(Stores.ROS2_JAZZY)


def _stamp_ns(stamp: float | int) -> int:
    """Nanoseconds from float seconds (or pass an int of nanoseconds through)."""
    if isinstance(stamp, (int, np.integer)):
        return int(stamp)
    return round(float(stamp) * 1e9)


class CameraBagWriter:
    """Writes one RGB-D camera (colour, depth, camera_info, pose) into a new rosbag2 directory.

    Use as a context manager. ``stamp`` arguments are float seconds or int nanoseconds; the header
    stamp and the bag's log time are the same. ``path`` must not exist yet (rosbag2 rule).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage: str = "sqlite3",
        image_topic: str = DEFAULT_TOPICS["image_topic"],
        depth_topic: str = DEFAULT_TOPICS["depth_topic"],
        info_topic: str = DEFAULT_TOPICS["info_topic"],
        pose_topic: str = DEFAULT_TOPICS["pose_topic"],
        optical_frame: str = "camera_color_optical_frame",
        world_frame: str = "map",
        depth_encoding: str = "32FC1",
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
        if depth_encoding not in DEPTH_OUTPUT_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {DEPTH_OUTPUT_ENCODINGS}, "
                             f"got {depth_encoding!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"{self.path} already exists; rosbag2 writes into a new directory")
        self.typestore = jazzy_typestore()
        self.optical_frame = optical_frame
        self.world_frame = world_frame
        self.depth_encoding = depth_encoding
        self._topics = {"image": image_topic, "depth": depth_topic, "info": info_topic, "pose": pose_topic}
        self._writer = Writer(self.path, version=ROSBAG2_VERSION, storage_plugin=STORAGES[storage])
        self._connections: dict[str, object] = {}
        self._writer.open()

    def __enter__(self) -> CameraBagWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml). Safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _connection(self, kind: str):
        if kind not in self._connections:
            msgtype = _TYPES["image" if kind == "depth" else kind]
            self._connections[kind] = self._writer.add_connection(
                self._topics[kind], msgtype, typestore=self.typestore
            )
        return self._connections[kind]

    def _header(self, stamp_ns: int, frame_id: str):
        types = self.typestore.types
        seconds, nanoseconds = divmod(stamp_ns, 1_000_000_000)
        time = types["builtin_interfaces/msg/Time"](sec=seconds, nanosec=nanoseconds)
        return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def _write(self, kind: str, stamp_ns: int, message) -> None:
        if self._writer is None:
            raise ValueError("the bag writer is closed")
        msgtype = _TYPES["image" if kind == "depth" else kind]
        data = self.typestore.serialize_cdr(message, msgtype)
        self._writer.write(self._connection(kind), stamp_ns, data)

    def write_rgb(self, stamp: float | int, rgb: np.ndarray) -> None:
        """An (H, W, 3) uint8 image as rgb8."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
        self._write("image", _stamp_ns(stamp), self._image(_stamp_ns(stamp), rgb, "rgb8", rgb.shape[1] * 3))

    def write_depth(self, stamp: float | int, depth_m: np.ndarray) -> None:
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
        self._write("depth", _stamp_ns(stamp), self._image(_stamp_ns(stamp), data, self.depth_encoding, step))

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

    def write_camera_info(self, stamp: float | int, intrinsics: np.ndarray, width: int, height: int) -> None:
        """A pinhole CameraInfo without distortion (plumb_bob, zero coefficients)."""
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
        self._write("info", _stamp_ns(stamp), message)

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
