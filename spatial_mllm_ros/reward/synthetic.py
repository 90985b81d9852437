# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""A synthetic RGB-D push trajectory whose true progress is known, in memory or as a rosbag2.

Reward labelling needs trajectories with a ground truth to test and benchmark against: here a red
box slides at constant speed across a table in front of a static camera, so the true progress of
frame k of n is ``k / (n - 1)`` and the box has moved ``k / (n - 1) * push_distance`` metres. The
depth image (float32 metres) shows the box nearer than the table. Bags are written with
``rosbags`` (topics as in :data:`spatial_mllm_ros.reward.episodes.DEFAULT_TOPICS`: colour rgb8, depth
32FC1, camera_info, camera pose), so the bag reader and the labelling CLI see a real recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.frames import Frame


@dataclass(frozen=True)
class PushTrajectory:
    """Frames plus their ground truth."""

    frames: list[Frame]
    true_progress: np.ndarray  # [n] in [0, 1]
    true_displacement_m: np.ndarray  # [n] metres moved since frame 0


def push_trajectory(num_frames: int, width: int = 56, height: int = 56, rate_hz: float = 5.0,
                    start_stamp: float = 1000.0, push_distance_m: float = 0.3,
                    camera_id: str = "camera") -> PushTrajectory:
    """The box-push trajectory of ``num_frames`` frames (see the module docstring)."""
    if num_frames < 1 or width < 16 or height < 16 or rate_hz <= 0:
        raise ValueError("need num_frames >= 1, an image of at least 16x16 pixels and rate_hz > 0")
    progress = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    focal = 0.8 * width
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    box_w, box_h = max(4, width // 6), max(4, height // 5)
    top = height // 2 - box_h // 2
    frames = []
    for k, fraction in enumerate(progress):
        rgb = np.full((height, width, 3), 90, np.uint8)  # wall
        rgb[height // 2:, :] = (140, 110, 80)  # table
        left = round(2 + (width - box_w - 4) * float(fraction))
        rgb[top:top + box_h, left:left + box_w] = (200, 30, 30)
        depth = np.full((height, width), 1.5, np.float32)
        depth[top:top + box_h, left:left + box_w] = 1.2
        frames.append(Frame(stamp=start_stamp + k / rate_hz, camera_id=camera_id, rgb=rgb, depth=depth,
                            depth_scale=1.0, K=intrinsics.copy(), pose=np.eye(4),
                            frame_id="camera_color_optical_frame"))
    return PushTrajectory(frames, progress, progress * push_distance_m)


def write_push_bag(path: str | Path, num_frames: int, storage: str = "sqlite3", **trajectory_kwargs) -> Path:
    """Write :func:`push_trajectory` as a rosbag2 directory (``storage`` "sqlite3" or "mcap")."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    trajectory = push_trajectory(num_frames, **trajectory_kwargs)
    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types  # message classes by type name
    image_t, header_t, time_t = "sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"
    info_t, pose_t = "sensor_msgs/msg/CameraInfo", "geometry_msgs/msg/PoseStamped"
    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
    path = Path(path)
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        color = writer.add_connection("/camera/color/image_raw", image_t, typestore=store)
        depth = writer.add_connection("/camera/depth/image_raw", image_t, typestore=store)
        info = writer.add_connection("/camera/color/camera_info", info_t, typestore=store)
        pose = writer.add_connection("/camera/pose", pose_t, typestore=store)
        for frame in trajectory.frames:
            nanoseconds = round(frame.stamp * 1e9)
            header = t[header_t](stamp=t[time_t](sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9),
                                 frame_id=frame.frame_id)
            h, w = frame.rgb.shape[:2]
            rgb_msg = t[image_t](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                                 step=w * 3, data=np.frombuffer(frame.rgb.tobytes(), np.uint8))
            depth_msg = t[image_t](header=header, height=h, width=w, encoding="32FC1", is_bigendian=0,
                                   step=w * 4, data=np.frombuffer(frame.depth.tobytes(), np.uint8))
            roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                        do_rectify=False)
            info_msg = t[info_t](header=header, height=h, width=w, distortion_model="plumb_bob",
                                 d=np.zeros(5), k=frame.K.reshape(-1), r=np.eye(3).reshape(-1),
                                 p=np.hstack([frame.K, np.zeros((3, 1))]).reshape(-1), binning_x=0,
                                 binning_y=0, roi=roi)
            origin = t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
            pose_msg = t[pose_t](header=t[header_t](stamp=header.stamp, frame_id="map"), pose=origin)
            for connection, msg in ((color, rgb_msg), (depth, depth_msg), (info, info_msg), (pose, pose_msg)):
                writer.write(connection, nanoseconds, store.serialize_cdr(msg, msg.__msgtype__))
    return path
