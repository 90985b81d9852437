# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Analytic RGB-D scans of an empty box room, for tests and benchmarks of frame selection.

Depth is exact ray casting against the room's six faces, so the ground truth of what each frame sees is
known. The default path is deliberately uneven in time: the camera dwells on one wall for most of the
scan, then turns once around the room; evenly spaced frames then over-sample the dwell while a
coverage-aware selector should find the turn.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.geometry import pixel_rays

# OpenCV camera axes (x right, y down, z forward) expressed in a z-up world looking along +x.
_CAMERA_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_pose(position, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """(4, 4) camera-to-world pose in a z-up world, OpenCV camera axes.

    The camera sits at ``position``, looks along heading ``yaw`` (rad, about world z) and is tilted up
    by ``pitch`` (rad).
    """
    pose = np.eye(4)
    body = Rotation.from_euler("zy", [yaw, -pitch]).as_matrix()
    pose[:3, :3] = body @ _CAMERA_TO_BODY
    pose[:3, 3] = position
    return pose


def pinhole(width: int, height: int, fov_deg: float = 60.0) -> np.ndarray:
    """(3, 3) intrinsics with the given horizontal field of view and the principal point at the centre."""
    focal = (width / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def render_box(room, intrinsics: np.ndarray, pose: np.ndarray, width: int, height: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the inside of the box [0, room] from ``pose``: (rgb (H, W, 3) uint8, depth (H, W) metres).

    Colour is a 0.5 m checkerboard tinted per face, so images differ where the geometry does.
    """
    room = np.asarray(room, dtype=np.float64)
    rays = pixel_rays(intrinsics, height, width, 1).astype(np.float64)  # (H*W, 3), z = 1
    directions = rays @ pose[:3, :3].T
    origin = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(directions > 0, room, 0.0)
        distance = (bound - origin) / directions
    distance[~np.isfinite(distance) | (distance <= 0)] = np.inf
    face_axis = np.argmin(distance, axis=1)
    depth = distance[np.arange(distance.shape[0]), face_axis]
    hits = origin + directions * depth[:, None]
    face = face_axis * 2 + (directions[np.arange(directions.shape[0]), face_axis] > 0)
    checker = (np.floor(hits * 2.0).astype(np.int64).sum(axis=1) & 1).astype(np.float64)
    tint = np.array([[200, 80, 80], [80, 200, 80], [80, 80, 200], [200, 200, 80], [80, 200, 200],
                     [200, 80, 200]], dtype=np.float64)[face]
    rgb = (tint * (0.6 + 0.4 * checker[:, None])).astype(np.uint8).reshape(height, width, 3)
    return rgb, depth.reshape(height, width).astype(np.float32)


def dwell_then_turn_path(num_frames: int, room, dwell_fraction: float = 0.75) -> list[np.ndarray]:
    """Camera poses of an uneven scan: a long dwell on one wall, then one full turn.

    Near the room centre the camera looks at one wall (small jitter) for ``dwell_fraction`` of the
    frames, then turns once around while drifting sideways.
    """
    room = np.asarray(room, dtype=np.float64)
    centre = room / 2.0
    centre[2] = min(1.4, room[2] * 0.5)
    dwell = round(num_frames * dwell_fraction)
    poses = []
    for i in range(num_frames):
        if i < dwell:
            phase = i / max(dwell - 1, 1)
            yaw = 0.15 * np.sin(2 * np.pi * phase)
            position = centre + np.array([0.0, 0.2 * np.sin(np.pi * phase), 0.0])
        else:
            phase = (i - dwell + 1) / max(num_frames - dwell, 1)
            yaw = 2 * np.pi * phase
            position = centre + np.array([0.4 * np.sin(np.pi * phase), 0.0, 0.0])
        poses.append(camera_pose(position, yaw, pitch=-0.1))
    return poses


def make_room_scan(num_frames: int = 64, width: int = 160, height: int = 120, room=(6.0, 4.0, 3.0),
                   fov_deg: float = 60.0, dwell_fraction: float = 0.75, fps: float = 10.0,
                   depth_in_mm: bool = True, camera_id: str = "camera") -> list[Frame]:
    """A dwell-then-turn RGB-D scan of a box room as :class:`Frame` objects with depth, K and pose.

    Depth is uint16 millimetres (scale 0.001) unless ``depth_in_mm`` is False (float32 metres).
    """
    intrinsics = pinhole(width, height, fov_deg)
    frames = []
    for i, pose in enumerate(dwell_then_turn_path(num_frames, room, dwell_fraction)):
        rgb, depth = render_box(room, intrinsics, pose, width, height)
        if depth_in_mm:
            depth_arr, scale = np.round(depth * 1000.0).clip(0, 65535).astype(np.uint16), 0.001
        else:
            depth_arr, scale = depth, 1.0
        frames.append(Frame(stamp=i / fps, camera_id=camera_id, rgb=rgb, depth=depth_arr, depth_scale=scale,
                            K=intrinsics, pose=pose, frame_id=f"{camera_id}_optical"))
    return frames
