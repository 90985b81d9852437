# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Frame container, zero-copy buffer views and pose/camera geometry against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_mllm_ros.core.frames import Frame, depth_view, rgb_view
from spatial_mllm_ros.core.geometry import (
    interpolate_poses,
    intrinsics_from_camera_info,
    pixel_rays,
    pose_from_translation_quaternion,
    pose_problem,
    pose_to_translation_quaternion,
    unproject_depth,
)

K_SMALL = np.array([[100.0, 0.0, 2.0], [0.0, 100.0, 1.0], [0.0, 0.0, 1.0]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    return pose


def test_frame_validates_and_converts_depth():
    rgb = np.zeros((2, 3, 3), np.uint8)
    depth = np.array([[1000, 2500, 0], [65535, 1, 10]], np.uint16)
    frame = Frame(stamp=1.5, camera_id="c", rgb=rgb, depth=depth, depth_scale=0.001)
    np.testing.assert_allclose(frame.depth_m(), [[1.0, 2.5, 0.0], [65.535, 0.001, 0.01]], rtol=1e-6)
    assert frame.depth_m().dtype == np.float32
    np.testing.assert_allclose(frame.depth_m(stride=2), [[1.0, 0.0]], rtol=1e-6)
    assert frame.nbytes == 18 + 12
    assert not frame.has_geometry
    metres = np.ones((2, 3), np.float32)
    assert Frame(0.0, "c", rgb, depth=metres).depth_m() is metres  # float metres: no copy
    with pytest.raises(ValueError, match="uint8"):
        Frame(0.0, "c", np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="depth"):
        Frame(0.0, "c", rgb, depth=np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="pose"):
        Frame(0.0, "c", rgb, pose=np.eye(3))


def test_rgb_view_is_zero_copy_and_skips_row_padding():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = np.zeros((4, 16), np.uint8)
    padded[:, :15] = image.reshape(4, 15)
    buffer = bytearray(padded.tobytes())
    view = rgb_view(buffer, 4, 5, 16, "rgb8")
    np.testing.assert_array_equal(view, image)
    assert np.shares_memory(view, np.frombuffer(buffer, np.uint8))
    assert not view.flags.writeable
    np.testing.assert_array_equal(rgb_view(buffer, 4, 5, 16, "bgr8"), image[..., ::-1])
    rgba = np.dstack([image, np.full((4, 5), 255, np.uint8)])
    np.testing.assert_array_equal(rgb_view(rgba.tobytes(), 4, 5, 20, "rgba8"), image)
    np.testing.assert_array_equal(rgb_view(list(padded.reshape(-1)), 4, 5, 16), image)  # list: copied
    with pytest.raises(ValueError, match="needed"):
        rgb_view(buffer[:-20], 4, 5, 16)
    with pytest.raises(ValueError, match="encoding"):
        rgb_view(buffer, 4, 5, 16, "yuv422")


def test_depth_view_millimetres_metres_and_big_endian():
    depth = np.arange(20, dtype=np.uint16).reshape(4, 5) * 100
    padded = np.zeros((4, 6), np.uint16)
    padded[:, :5] = depth
    view, scale = depth_view(padded.tobytes()[:-2], 4, 5, 12, "16UC1")  # last row unpadded
    np.testing.assert_array_equal(view, depth)
    assert scale == 0.001
    swapped, _ = depth_view(padded.byteswap().tobytes(), 4, 5, 12, "16UC1", is_bigendian=True)
    np.testing.assert_array_equal(swapped, depth)
    metres = np.linspace(0.5, 4.0, 20, dtype=np.float32).reshape(4, 5)
    view, scale = depth_view(metres.tobytes(), 4, 5, 20, "32FC1")
    np.testing.assert_array_equal(view, metres)
    assert scale == 1.0
    with pytest.raises(ValueError, match="multiple"):
        depth_view(padded.tobytes(), 4, 5, 11, "16UC1")


def test_pose_from_ros_quaternion_matches_hand_values():
    half = math.sqrt(0.5)
    pose = pose_from_translation_quaternion([1.0, 2.0, 3.0], [0.0, 0.0, half, half])  # 90 deg about z
    expected = rot_z(math.pi / 2)
    expected[:3, 3] = [1.0, 2.0, 3.0]
    np.testing.assert_allclose(pose, expected, atol=1e-12)
    translation, quaternion = pose_to_translation_quaternion(pose)
    np.testing.assert_allclose(translation, [1, 2, 3])
    np.testing.assert_allclose(np.abs(quaternion), [0, 0, half, half], atol=1e-12)
    unnormalised = pose_from_translation_quaternion([0, 0, 0], [0.0, 0.0, 2 * half, 2 * half])
    np.testing.assert_allclose(unnormalised[:3, :3], rot_z(math.pi / 2)[:3, :3], atol=1e-12)
    with pytest.raises(ValueError, match="invalid pose"):
        pose_from_translation_quaternion([0, 0, 0], [0, 0, 0, 0])
    assert pose_problem(pose) == ""
    assert "rotation" in pose_problem(np.diag([1.0, 1.0, -1.0, 1.0]))
    assert "non-finite" in pose_problem(np.full((4, 4), np.nan))


def test_interpolate_poses_slerp_lerp_and_tolerances():
    start = np.eye(4)
    end = rot_z(math.pi / 2)
    end[:3, 3] = [2.0, 0.0, -4.0]
    stamps = np.array([10.0, 11.0])
    query = np.array([10.0, 10.25, 10.5, 11.0, 11.04, 11.2, 9.9])
    poses, valid = interpolate_poses(stamps, np.stack([start, end]), query, max_gap=2.0, tolerance=0.05)
    assert valid.tolist() == [True, True, True, True, True, False, False]
    expected_quarter = rot_z(math.pi / 8)  # a quarter of the way: 22.5 deg
    expected_quarter[:3, 3] = [0.5, 0.0, -1.0]
    np.testing.assert_allclose(poses[1], expected_quarter, atol=1e-12)
    expected_half = rot_z(math.pi / 4)
    expected_half[:3, 3] = [1.0, 0.0, -2.0]
    np.testing.assert_allclose(poses[2], expected_half, atol=1e-12)
    np.testing.assert_allclose(poses[4], end, atol=1e-12)  # past the end, within tolerance: nearest
    assert np.isnan(poses[5]).all()
    _, valid = interpolate_poses(stamps, np.stack([start, end]), np.array([10.5]), max_gap=0.5,
                                 tolerance=0.05)
    assert not valid[0]  # the gap is longer than max_gap and no sample is near


def test_camera_info_k_and_unprojection_by_hand():
    k = intrinsics_from_camera_info([100.0, 0, 2.0, 0, 100.0, 1.0, 0, 0, 1])
    np.testing.assert_array_equal(k, K_SMALL)
    with pytest.raises(ValueError, match="9 entries"):
        intrinsics_from_camera_info([1, 2, 3])
    with pytest.raises(ValueError, match="fx"):
        intrinsics_from_camera_info([0.0, 0, 2.0, 0, 100.0, 1.0, 0, 0, 1])
    rays = pixel_rays(K_SMALL, 3, 5, 2)  # pixels u in {0, 2, 4}, v in {0, 2}
    np.testing.assert_allclose(rays[0], [-0.02, -0.01, 1.0], rtol=1e-6)
    np.testing.assert_allclose(rays[-1], [0.02, 0.01, 1.0], rtol=1e-6)
    depth = np.full((3, 5), 2.0, np.float32)
    depth[0, 0] = 0.0  # invalid
    depth[2, 4] = np.nan
    pose = rot_z(math.pi / 2)
    pose[:3, 3] = [1.0, 1.0, 1.0]
    points = unproject_depth(depth[::2, ::2], K_SMALL, pose, stride=2)
    assert points.shape == (4, 3)
    # pixel (u=2, v=0): camera point (0, -0.02, 2); rotated 90 deg about z: (0.02, 0, 2); + (1, 1, 1)
    np.testing.assert_allclose(points[0], [1.02, 1.0, 3.0], rtol=1e-6)
