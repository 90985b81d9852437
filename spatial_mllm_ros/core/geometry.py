# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Pose and camera geometry on maintained libraries (transforms3d, scipy), never hand-rolled rotations.

Conventions: poses are (4, 4) float64 camera-to-world transforms with OpenCV camera axes (x right,
y down, z forward); quaternions at this module's boundary are in ROS order (x, y, z, w).

Sanity bounds (finite is not enough: ``fx=1e-300`` or a pose at 1e300 m overflow later arithmetic):
a translation is at most :data:`MAX_TRANSLATION_M` from the origin (covers UTM and Earth-centred
coordinates); focal lengths lie in [:data:`MIN_FOCAL_PX`, :data:`MAX_FOCAL_PX`] pixels (below one pixel
the field of view of any real image is ~180 degrees; 1e6 px is a 0.03-degree telescope at 640 px), the
principal point and skew within :data:`MAX_PRINCIPAL_PX`. :func:`check_pose` / :func:`check_intrinsics`
say why a value is refused with a reason key (``invalid_data`` or ``out_of_bounds``) for counters.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import transforms3d.quaternions as tq
from scipy.spatial.transform import Rotation, Slerp

# A rotation block further than this from orthonormal (max abs entry of R^T R - I) is rejected.
ROTATION_TOLERANCE = 1e-3
MAX_TRANSLATION_M = 1.0e7
MIN_FOCAL_PX = 1.0
MAX_FOCAL_PX = 1.0e6
MAX_PRINCIPAL_PX = 1.0e6
INVALID_DATA = "invalid_data"
OUT_OF_BOUNDS = "out_of_bounds"


class GeometryIssue(NamedTuple):
    """Why a pose or an intrinsics matrix is refused: a reason key for counters and a message."""

    reason: str
    message: str


def pose_from_translation_quaternion(translation, quaternion_xyzw) -> np.ndarray:
    """(4, 4) float64 pose from a translation (3,) and a ROS-order (x, y, z, w) quaternion.

    The quaternion is normalised; a zero or non-finite quaternion raises ValueError.
    """
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    x, y, z, w = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
    q_wxyz = np.array([w, x, y, z])
    norm = float(np.linalg.norm(q_wxyz))
    if not (np.isfinite(norm) and norm > 1e-12) or not np.all(np.isfinite(t)):
        raise ValueError(f"invalid pose: translation {t.tolist()}, quaternion {[x, y, z, w]}")
    pose = np.eye(4)
    pose[:3, :3] = tq.quat2mat(q_wxyz / norm)
    pose[:3, 3] = t
    return pose


def pose_to_translation_quaternion(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pose_from_translation_quaternion`: (translation (3,), quaternion xyzw (4,))."""
    pose = np.asarray(pose, dtype=np.float64)
    w, x, y, z = tq.mat2quat(pose[:3, :3])
    return pose[:3, 3].copy(), np.array([x, y, z, w])


def _finite_matrix(value, name: str, size: int) -> np.ndarray | GeometryIssue:
    """``value`` as a finite (size, size) float64 array, or why it is not one."""
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return GeometryIssue(INVALID_DATA, f"{name} is not a numeric array")
    if matrix.shape != (size, size):
        return GeometryIssue(INVALID_DATA, f"{name} must be {size}x{size}, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        return GeometryIssue(INVALID_DATA, f"{name} has non-finite entries")
    return matrix


def check_pose(pose) -> GeometryIssue | None:
    """Why ``pose`` is not a usable rigid camera-to-world transform (reason + message), or None."""
    pose = _finite_matrix(pose, "pose", 4)
    if isinstance(pose, GeometryIssue):
        return pose
    if not np.allclose(pose[3], (0.0, 0.0, 0.0, 1.0), atol=1e-6):
        return GeometryIssue(INVALID_DATA, f"pose bottom row must be [0, 0, 0, 1], got {pose[3].tolist()}")
    rotation = pose[:3, :3]
    if np.max(np.abs(rotation)) > 1.0 + ROTATION_TOLERANCE \
            or np.max(np.abs(rotation.T @ rotation - np.eye(3))) > ROTATION_TOLERANCE \
            or np.linalg.det(rotation) <= 0:
        return GeometryIssue(INVALID_DATA, "pose rotation block is not a proper rotation")
    distance = float(np.max(np.abs(pose[:3, 3])))
    if distance > MAX_TRANSLATION_M:
        return GeometryIssue(OUT_OF_BOUNDS,
                             f"pose translation {distance:.3g} m exceeds {MAX_TRANSLATION_M:.0e} m")
    return None


def check_intrinsics(intrinsics) -> GeometryIssue | None:
    """Why ``intrinsics`` is not a usable (3, 3) pinhole matrix (reason + message), or None."""
    k = _finite_matrix(intrinsics, "intrinsics", 3)
    if isinstance(k, GeometryIssue):
        return k
    if k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] != 1.0 or np.any(k[[1, 2, 2], [0, 0, 1]] != 0.0):
        return GeometryIssue(INVALID_DATA, "intrinsics need fx, fy > 0, K[2,2] == 1 and zeros below the "
                             f"diagonal, got {k.tolist()}")
    fx, fy = float(k[0, 0]), float(k[1, 1])
    if not (MIN_FOCAL_PX <= fx <= MAX_FOCAL_PX and MIN_FOCAL_PX <= fy <= MAX_FOCAL_PX):
        return GeometryIssue(OUT_OF_BOUNDS, f"focal lengths fx={fx:.3g}, fy={fy:.3g} px are outside "
                             f"{MIN_FOCAL_PX:g}..{MAX_FOCAL_PX:.0e} px")
    if np.max(np.abs(k[[0, 1, 0], [2, 2, 1]])) > MAX_PRINCIPAL_PX:
        return GeometryIssue(OUT_OF_BOUNDS, f"principal point or skew beyond {MAX_PRINCIPAL_PX:.0e} px")
    return None


def pose_problem(pose) -> str:
    """Why ``pose`` is not a usable rigid camera-to-world transform, or "" when it is."""
    issue = check_pose(pose)
    return issue.message if issue else ""


def intrinsics_problem(intrinsics) -> str:
    """Why ``intrinsics`` is not a usable (3, 3) pinhole matrix, or "" when it is."""
    issue = check_intrinsics(intrinsics)
    return issue.message if issue else ""


def intrinsics_from_camera_info(k_row_major) -> np.ndarray:
    """(3, 3) float64 matrix from ``sensor_msgs/CameraInfo.k`` (9 numbers, row-major)."""
    values = np.asarray(k_row_major, dtype=np.float64)
    if values.size != 9:
        raise ValueError(f"camera_info K must have 9 entries, got {values.size}")
    k = values.reshape(3, 3)
    problem = intrinsics_problem(k)
    if problem:
        raise ValueError(problem)
    return k


def interpolate_poses(stamps: np.ndarray, poses: np.ndarray, query: np.ndarray, max_gap: float,
                      tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses at the ``query`` times from a time-sorted pose track.

    A query between two track samples at most ``max_gap`` seconds apart gets the rotation slerped
    (scipy ``Slerp``) and the translation linearly interpolated; otherwise it gets the nearest sample if
    that is within ``tolerance`` seconds (no extrapolation). Returns (poses (Q, 4, 4) float64,
    valid (Q,) bool); invalid rows are NaN.

    Args:
        stamps: (M,) strictly increasing sample times.
        poses: (M, 4, 4) camera-to-world samples.
        query: (Q,) times to evaluate.
        max_gap: longest gap (s) between two samples that is still interpolated across.
        tolerance: how far (s) a query may be from the nearest sample when not interpolated.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    out = np.full((query.size, 4, 4), np.nan)
    valid = np.zeros(query.size, dtype=bool)
    if stamps.size == 0 or query.size == 0:
        return out, valid
    right = np.clip(np.searchsorted(stamps, query, side="left"), 0, stamps.size - 1)
    left = np.clip(right - 1, 0, stamps.size - 1)
    # Nearest sample within the tolerance (covers exact hits and both ends of the track).
    nearest = np.where(np.abs(stamps[left] - query) <= np.abs(stamps[right] - query), left, right)
    near_ok = np.abs(stamps[nearest] - query) <= tolerance
    out[near_ok] = poses[nearest[near_ok]]
    valid |= near_ok
    # Bracketed queries over a short enough gap: slerp + lerp.
    bracketed = (stamps[left] <= query) & (query <= stamps[right]) & (right == left + 1) \
        & (stamps[right] - stamps[left] <= max_gap)
    if np.any(bracketed) and stamps.size >= 2:
        q = query[bracketed]
        lo, hi = left[bracketed], right[bracketed]
        alpha = ((q - stamps[lo]) / (stamps[hi] - stamps[lo]))[:, None]
        translation = (1.0 - alpha) * poses[lo, :3, 3] + alpha * poses[hi, :3, 3]
        slerp = Slerp(stamps, Rotation.from_matrix(poses[:, :3, :3]))
        interpolated = np.tile(np.eye(4), (q.size, 1, 1))
        interpolated[:, :3, :3] = slerp(q).as_matrix()
        interpolated[:, :3, 3] = translation
        out[bracketed] = interpolated
        valid |= bracketed
    return out, valid


@lru_cache(maxsize=32)
def _pixel_rays_cached(key: tuple, height: int, width: int, stride: int) -> np.ndarray:
    fx, fy, cx, cy, skew = key
    v, u = np.mgrid[0:height:stride, 0:width:stride].astype(np.float64)
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    rays = np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3).astype(np.float32)
    rays.setflags(write=False)
    return rays


def pixel_rays(intrinsics: np.ndarray, height: int, width: int, stride: int = 1) -> np.ndarray:
    """(P, 3) float32 camera-frame rays with z = 1 for every ``stride``-th pixel (row-major order).

    Pixel (u, v) is the centre of column u, row v (OpenCV convention). Cached per intrinsics and size,
    read-only.
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    key = (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), float(k[0, 1]))
    return _pixel_rays_cached(key, int(height), int(width), int(stride))


def unproject_depth(depth_m: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray, stride: int = 1,
                    min_depth: float = 0.1, max_depth: float = 10.0) -> np.ndarray:
    """World points (N, 3) float32 of the valid pixels of an already strided depth image.

    Args:
        depth_m: (h, w) float32 metres, pixels ``stride`` apart of the full image (``depth[::s, ::s]``).
        intrinsics: (3, 3) K of the full-resolution image.
        pose: (4, 4) camera-to-world.
        stride: the pixel stride ``depth_m`` was taken with.
        min_depth: nearest valid depth in metres.
        max_depth: farthest valid depth in metres (others, NaN and inf are dropped).
    """
    h, w = depth_m.shape
    rays = pixel_rays(intrinsics, h * stride, w * stride, stride)  # exactly h * w rays
    d = depth_m.reshape(-1)
    keep = (d >= min_depth) & (d <= max_depth)  # NaN compares False
    rotation = np.asarray(pose[:3, :3], dtype=np.float32)
    translation = np.asarray(pose[:3, 3], dtype=np.float32)
    points = (rays[keep] * d[keep, None]) @ rotation.T
    points += translation
    return points


def unproject_depth_batch(depths_m: np.ndarray, intrinsics: np.ndarray, poses: np.ndarray, stride: int = 1,
                          min_depth: float = 0.1, max_depth: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """World points of many same-size, same-intrinsics strided depth images at once.

    Args:
        depths_m: (N, h, w) float32 metres, each ``depth[::stride, ::stride]`` of a full image.
        intrinsics: (3, 3) K of the full-resolution images.
        poses: (N, 4, 4) camera-to-world.
        stride: the pixel stride the depth was taken with.
        min_depth: nearest valid depth in metres.
        max_depth: farthest valid depth in metres.

    Returns:
        (world (N, 3, P) float32 with P = h * w, valid (N, P) bool). Invalid pixels (out of range, NaN)
        hold the camera centre; use ``valid`` to skip them.
    """
    n, h, w = depths_m.shape
    rays_t = np.ascontiguousarray(pixel_rays(intrinsics, h * stride, w * stride, stride).T)  # (3, P)
    depth = depths_m.reshape(n, h * w)
    valid = (depth >= min_depth) & (depth <= max_depth)  # NaN compares False
    depth = np.where(valid, depth, np.float32(0.0))
    poses = np.asarray(poses)
    directions = np.matmul(poses[:, :3, :3].astype(np.float32), rays_t)  # (N, 3, P)
    directions *= depth[:, None, :]
    directions += poses[:, :3, 3].astype(np.float32)[:, :, None]
    return directions, valid
