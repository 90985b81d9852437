# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The ROS-free tf tree: chains, interpolation, static transforms, tf2's refusals and bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatial_mllm_ros.core.tf_tree import TfTree, TransformError

IDENTITY_Q = (0.0, 0.0, 0.0, 1.0)


def _quat_z(angle: float) -> tuple[float, float, float, float]:
    return tuple(Rotation.from_euler("z", angle).as_quat())


def _robot_tree() -> TfTree:
    """map -> odom (dynamic) -> base_link (dynamic) -> camera_link (static) -> optical (static)."""
    tree = TfTree()
    for stamp in (0.0, 1.0, 2.0):
        tree.set_transform("map", "odom", stamp, (0.1 * stamp, 0.0, 0.0), IDENTITY_Q)
        tree.set_transform("odom", "base_link", stamp, (stamp, 2.0 * stamp, 0.0), _quat_z(0.5 * stamp))
    tree.set_transform("base_link", "camera_link", 0.0, (0.2, 0.0, 0.5), IDENTITY_Q, static=True)
    # REP 103 optical frame: z forward, x right, y down
    tree.set_transform("camera_link", "camera_optical", 0.0, (0.0, 0.0, 0.0), (-0.5, 0.5, -0.5, 0.5),
                       static=True)
    return tree


def test_chain_composes_and_interpolates():
    tree = _robot_tree()
    pose = tree.lookup("map", "camera_optical", 1.5)
    # expected by composing the interpolated edges by hand
    map_odom = np.eye(4)
    map_odom[0, 3] = 0.15
    odom_base = np.eye(4)
    odom_base[:3, :3] = Rotation.from_euler("z", 0.75).as_matrix()
    odom_base[:3, 3] = (1.5, 3.0, 0.0)
    base_cam = np.eye(4)
    base_cam[:3, 3] = (0.2, 0.0, 0.5)
    cam_opt = np.eye(4)
    cam_opt[:3, :3] = Rotation.from_quat((-0.5, 0.5, -0.5, 0.5)).as_matrix()
    expected = map_odom @ odom_base @ base_cam @ cam_opt
    np.testing.assert_allclose(pose, expected, atol=1e-12)
    # the optical z axis (forward) is the base x axis rotated by the yaw
    np.testing.assert_allclose(pose[:3, 2], (math.cos(0.75), math.sin(0.75), 0.0), atol=1e-12)


def test_inverse_and_sibling_lookups():
    tree = _robot_tree()
    forward = tree.lookup("map", "camera_optical", 0.5)
    backward = tree.lookup("camera_optical", "map", 0.5)
    np.testing.assert_allclose(forward @ backward, np.eye(4), atol=1e-12)
    tree.set_transform("base_link", "lidar", 0.0, (0.0, 0.0, 1.0), IDENTITY_Q, static=True)
    lidar_from_camera = tree.lookup("lidar", "camera_link", 1.0)
    np.testing.assert_allclose(lidar_from_camera[:3, 3], (0.2, 0.0, -0.5), atol=1e-12)


def test_extrapolation_refused_unless_within_tolerance():
    tree = _robot_tree()
    with pytest.raises(TransformError) as future:
        tree.lookup("map", "base_link", 2.5)
    assert future.value.reason == "extrapolation_future"
    with pytest.raises(TransformError) as past:
        tree.lookup("map", "base_link", -0.1)
    assert past.value.reason == "extrapolation_past"
    clamped = tree.lookup("map", "base_link", 2.05, tolerance_s=0.1)
    np.testing.assert_allclose(clamped, tree.lookup("map", "base_link", 2.0), atol=1e-12)


def test_latest_common_time_and_static_only_chains():
    tree = _robot_tree()
    tree.set_transform("map", "odom", 3.0, (0.3, 0.0, 0.0), IDENTITY_Q)
    assert tree.latest_common_time("map", "camera_optical") == 2.0  # odom->base_link ends at 2.0
    latest = tree.lookup("map", "camera_optical")
    np.testing.assert_allclose(latest, tree.lookup("map", "camera_optical", 2.0))
    assert tree.latest_common_time("base_link", "camera_optical") is None
    # static edges hold at any time, including far from every dynamic sample
    np.testing.assert_allclose(tree.lookup("base_link", "camera_link", 1e6)[:3, 3], (0.2, 0.0, 0.5))


def test_late_transform_becomes_available():
    tree = TfTree()
    tree.set_transform("map", "base", 0.0, (0.0, 0.0, 0.0), IDENTITY_Q)
    assert not tree.can_transform("map", "base", 1.0)
    tree.set_transform("map", "base", 2.0, (2.0, 0.0, 0.0), IDENTITY_Q)  # arrives after the question
    np.testing.assert_allclose(tree.lookup("map", "base", 1.0)[:3, 3], (1.0, 0.0, 0.0))


@pytest.mark.parametrize(("args", "reason"), [
    (("map", "map", 0.0, (0, 0, 0), IDENTITY_Q), "self_transform"),
    (("", "a", 0.0, (0, 0, 0), IDENTITY_Q), "empty_frame_id"),
    (("map", "a", 0.0, (math.nan, 0, 0), IDENTITY_Q), "nan_input"),
    (("map", "a", math.inf, (0, 0, 0), IDENTITY_Q), "nan_input"),
    (("map", "a", 0.0, (0, 0, 0), (0.0, 0.0, 0.0, 1.1)), "denormalized_quaternion"),
    (("map", "a", 0.0, (0, 0, 0), (0.0, 0.0, 0.0, 0.0)), "denormalized_quaternion"),
    (("map", "x" * 300, 0.0, (0, 0, 0), IDENTITY_Q), "frame_id_too_long"),
])
def test_refused_inputs_name_their_reason(args, reason):
    tree = TfTree()
    with pytest.raises(TransformError) as refused:
        tree.set_transform(*args)
    assert refused.value.reason == reason
    assert tree.frames == set()


def test_unknown_and_unconnected_frames():
    tree = _robot_tree()
    tree.set_transform("world2", "other", 0.0, (0, 0, 0), IDENTITY_Q, static=True)
    with pytest.raises(TransformError) as unknown:
        tree.lookup("map", "nowhere", 0.0)
    assert unknown.value.reason == "unknown_frame"
    with pytest.raises(TransformError) as apart:
        tree.lookup("map", "other", 0.0)
    assert apart.value.reason == "not_connected"
    assert tree.first_connected("camera_optical", ("world2", "odom", "map")) == "odom"
    assert tree.first_connected("other", ("map", "odom")) is None


def test_memory_is_bounded():
    tree = TfTree(cache_time_s=1.0, max_samples_per_edge=50, max_frames=3)
    for i in range(1000):
        tree.set_transform("map", "base", i * 0.001, (i, 0, 0), IDENTITY_Q)
    edge_samples = len(tree._edges["base"].stamps)
    assert edge_samples == 50
    with pytest.raises(TransformError) as old:
        tree.set_transform("map", "base", -5.0, (0, 0, 0), IDENTITY_Q)
    assert old.value.reason == "old_data"
    tree.set_transform("map", "b", 0.0, (0, 0, 0), IDENTITY_Q)
    tree.set_transform("map", "c", 0.0, (0, 0, 0), IDENTITY_Q)
    with pytest.raises(TransformError) as full:
        tree.set_transform("map", "d", 0.0, (0, 0, 0), IDENTITY_Q)
    assert full.value.reason == "too_many_frames"


def test_reparenting_and_loops_do_not_hang():
    tree = TfTree()
    tree.set_transform("a", "b", 0.0, (1, 0, 0), IDENTITY_Q, static=True)
    tree.set_transform("b", "a", 0.0, (1, 0, 0), IDENTITY_Q, static=True)  # a loop from a bad publisher
    assert tree.parent_of("a") == "b" and tree.parent_of("b") == "a"
    # walking up never cycles; the lookup resolves through the first common frame (edge b -> a)
    np.testing.assert_allclose(tree.lookup("b", "a", 0.0)[:3, 3], (-1, 0, 0))
    tree.clear()
    assert tree.frames == set()
