# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""FrameBuffer: time association, pose interpolation, stamp policies, bounds and counters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.core.buffer import DROP_REASONS, KINDS, FrameBuffer

K = [[100.0, 0.0, 2.0], [0.0, 100.0, 1.5], [0.0, 0.0, 1.0]]


def rgb(value: int = 0, shape=(4, 5)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def rot_z(angle: float, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = translation
    return pose


def assert_counters_consistent(buffer: FrameBuffer) -> None:
    counters = buffer.counters
    for kind in KINDS:
        dropped = sum(counters[f"dropped_{kind}_{reason}"] for reason in DROP_REASONS)
        assert counters[f"received_{kind}"] == counters[f"accepted_{kind}"] + dropped, kind
    for kind in ("image", "depth", "pose"):
        removed = counters[f"evicted_{kind}_capacity"] + counters[f"evicted_{kind}_memory"] \
            + counters[f"cleared_{kind}_reset"]
        assert counters[f"held_{kind}"] == counters[f"accepted_{kind}"] - removed, kind
    assert counters["held_bytes"] == buffer.nbytes <= buffer.max_bytes


def test_association_nearest_depth_within_tolerance_and_pose_interpolation():
    buffer = FrameBuffer(depth_tolerance=0.02, pose_tolerance=0.05, max_pose_gap=0.5)
    assert buffer.set_intrinsics("cam", K) == "accepted"
    for i, stamp in enumerate([1.00, 1.10, 1.20, 1.30]):
        assert buffer.add_image("cam", stamp, rgb(i), frame_id="cam_optical") == "accepted"
    # depth: 1.012 pairs with 1.00 (12 ms), 1.13 is 30 ms from 1.10 (too far), 1.195 pairs with 1.20
    for stamp, millimetres in [(1.012, 1000), (1.13, 2000), (1.195, 3000)]:
        assert buffer.add_depth("cam", stamp, np.full((4, 5), millimetres, np.uint16)) == "accepted"
    assert buffer.add_pose(1.0, rot_z(0.0, (0.0, 0.0, 0.0))) == "accepted"
    assert buffer.add_pose(1.2, rot_z(math.pi / 2, (2.0, 0.0, 0.0))) == "accepted"
    frames = buffer.frames("cam")
    assert [f.stamp for f in frames] == [1.00, 1.10, 1.20, 1.30]
    assert [None if f.depth is None else int(f.depth[0, 0]) for f in frames] == [1000, None, 3000, None]
    assert frames[0].depth_scale == 0.001 and frames[0].frame_id == "cam_optical"
    np.testing.assert_array_equal(frames[0].K, K)
    np.testing.assert_allclose(frames[0].pose, rot_z(0.0), atol=1e-12)
    np.testing.assert_allclose(frames[1].pose, rot_z(math.pi / 4, (1.0, 0.0, 0.0)), atol=1e-12)  # halfway
    np.testing.assert_allclose(frames[2].pose, rot_z(math.pi / 2, (2.0, 0.0, 0.0)), atol=1e-12)
    assert frames[3].pose is None  # 100 ms past the last pose, tolerance 50 ms
    assert frames[0].rgb is not None and frames[0].rgb[0, 0, 0] == 0 and frames[2].rgb[0, 0, 0] == 2
    with_both = buffer.frames("cam", require_depth=True, require_pose=True)
    assert [f.stamp for f in with_both] == [1.00, 1.20]
    pose = buffer.pose_at(1.05)
    np.testing.assert_allclose(pose, rot_z(math.pi / 8, (0.5, 0.0, 0.0)), atol=1e-12)


def test_image_is_kept_by_reference_and_window_queries():
    buffer = FrameBuffer()
    image = rgb(7)
    buffer.add_image("a", 5.0, image)
    assert buffer.frames()[0].rgb is image
    for stamp in [5.5, 6.0, 6.5]:
        buffer.add_image("a", stamp, rgb())
    for stamp in [5.25, 6.25]:
        buffer.add_image("b", stamp, rgb())
    assert [f.stamp for f in buffer.frames(start=5.5, end=6.25)] == [5.5, 6.0, 6.25]
    assert [(f.camera_id, f.stamp) for f in buffer.frames()] == [
        ("a", 5.0), ("b", 5.25), ("a", 5.5), ("a", 6.0), ("b", 6.25), ("a", 6.5)]
    assert buffer.frames("b", end=6.0)[0].stamp == 5.25
    assert buffer.latest().stamp == 6.5 and buffer.latest("b").stamp == 6.25
    assert buffer.camera_ids() == ["a", "b"]
    assert buffer.frames("missing") == []


def test_per_camera_pose_track_overrides_shared_track():
    buffer = FrameBuffer()
    buffer.add_image("front", 1.0, rgb())
    buffer.add_image("back", 1.0, rgb())
    buffer.add_pose(1.0, rot_z(0.0))
    buffer.add_pose(1.0, rot_z(math.pi), camera_id="back")
    frames = {f.camera_id: f for f in buffer.frames()}
    np.testing.assert_allclose(frames["front"].pose, rot_z(0.0))
    np.testing.assert_allclose(frames["back"].pose, rot_z(math.pi), atol=1e-12)


def test_stamp_policies_duplicate_out_of_order_invalid_and_reset():
    buffer = FrameBuffer(reset_jump=1.0)
    assert buffer.add_image("c", 10.0, rgb()) == "accepted"
    assert buffer.add_image("c", 10.0, rgb()) == "duplicate"
    assert buffer.add_image("c", 9.5, rgb()) == "out_of_order"
    assert buffer.add_image("c", float("nan"), rgb()) == "invalid_stamp"
    assert buffer.add_image("c", -1.0, rgb()) == "invalid_stamp"
    assert buffer.add_image("c", 10.1, np.zeros((4, 5), np.uint8)) == "invalid_data"
    assert buffer.add_depth("c", 10.0, np.zeros((4, 5), np.int32)) == "invalid_data"
    assert buffer.add_pose(10.0, np.diag([1.0, 1.0, -1.0, 1.0])) == "invalid_data"
    assert buffer.add_pose(10.0, "not a pose") == "invalid_data"
    assert buffer.set_intrinsics("c", [[0.0, 0, 0], [0, 0, 0], [0, 0, 1]]) == "invalid_data"
    assert buffer.add_image("c", 10.2, rgb()) == "accepted"
    assert buffer.add_image("d", 10.2, rgb()) == "accepted"
    assert buffer.add_pose(10.2, np.eye(4)) == "accepted"
    # bag loop: camera c jumps back 10 s -> everything is cleared, the new frame starts a new timeline
    assert buffer.add_image("c", 0.2, rgb()) == "accepted"
    assert [(f.camera_id, f.stamp) for f in buffer.frames()] == [("c", 0.2)]
    # camera d still has an old-timeline message in flight: dropped, not a second reset
    assert buffer.add_image("d", 10.25, rgb()) == "stale_after_reset"
    assert buffer.add_image("d", 0.25, rgb()) == "accepted"
    assert buffer.add_image("d", 0.3, rgb()) == "accepted"
    counters = buffer.counters
    assert counters["resets"] == 1
    assert counters["cleared_image_reset"] == 3 and counters["cleared_pose_reset"] == 1
    assert counters["dropped_image_duplicate"] == 1 and counters["dropped_image_out_of_order"] == 1
    assert counters["dropped_image_invalid_stamp"] == 2 and counters["dropped_image_stale_after_reset"] == 1
    assert counters["dropped_pose_invalid_data"] == 2
    assert counters["dropped_camera_info_invalid_data"] == 1
    assert_counters_consistent(buffer)


def test_count_and_byte_bounds_evict_oldest():
    frame_bytes = 4 * 5 * 3
    buffer = FrameBuffer(max_frames=3, max_bytes=5 * frame_bytes)
    for i in range(5):
        buffer.add_image("a", float(i), rgb())
    assert [f.stamp for f in buffer.frames("a")] == [2.0, 3.0, 4.0]
    assert buffer.counters["evicted_image_capacity"] == 2
    for i in range(3):
        buffer.add_image("b", 10.0 + i, rgb())  # 6 frames would exceed 5 frames' bytes
    assert buffer.nbytes == 5 * frame_bytes
    assert (buffer.frames()[0].camera_id, buffer.frames()[0].stamp) == ("a", 3.0)  # globally oldest went
    assert buffer.counters["evicted_image_memory"] == 1
    assert buffer.add_image("a", 20.0, rgb(shape=(40, 50))) == "too_large"
    view = np.zeros((8, 10, 4), np.uint8)[:, :, :3]  # a view keeps its 4-channel base alive
    small = FrameBuffer()
    small.add_image("a", 1.0, view)
    assert small.nbytes == 8 * 10 * 4
    assert_counters_consistent(buffer)


def test_bad_constructor_arguments_raise_value_error():
    with pytest.raises(ValueError, match="bounds"):
        FrameBuffer(max_frames=0)
    with pytest.raises(ValueError, match="reset_jump"):
        FrameBuffer(reset_jump=0.0)


stamp_values = st.one_of(
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 50.0]),
)
events = st.lists(
    st.tuples(st.sampled_from(["image", "depth", "pose", "info"]), st.sampled_from(["a", "b"]), stamp_values,
              st.integers(min_value=1, max_value=6)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events=events, max_frames=st.integers(1, 5), max_bytes=st.integers(1, 400))
def test_property_any_stamp_sequence_keeps_bounds_and_counters(events, max_frames, max_bytes):
    buffer = FrameBuffer(max_frames=max_frames, max_bytes=max_bytes, max_poses=4, reset_jump=5.0)
    for kind, camera, stamp, size in events:
        if kind == "image":
            status = buffer.add_image(camera, stamp, rgb(shape=(size, 2)))
        elif kind == "depth":
            status = buffer.add_depth(camera, stamp, np.full((size, 2), 1000, np.uint16))
        elif kind == "pose":
            status = buffer.add_pose(stamp, rot_z(stamp if math.isfinite(stamp) else 0.0))
        else:
            status = buffer.set_intrinsics(camera, K)
        assert isinstance(status, str)
        assert buffer.nbytes <= max_bytes
        counters = buffer.counters
        assert counters["held_image"] <= 2 * max_frames and counters["held_pose"] <= 4
        assert_counters_consistent(buffer)
    frames = buffer.frames()
    stamps = [f.stamp for f in frames]
    assert stamps == sorted(stamps)
    for camera in ("a", "b"):
        own = [f.stamp for f in buffer.frames(camera)]
        assert len(own) == len(set(own)) <= max_frames


def test_add_frame_round_trips_a_complete_frame():
    from spatial_mllm_ros.core.frames import Frame

    buffer = FrameBuffer()
    pose = rot_z(0.3, (1.0, 2.0, 3.0))
    frame = Frame(stamp=2.0, camera_id="c", rgb=rgb(9), depth=np.full((4, 5), 1.5, np.float32), K=np.array(K),
                  pose=pose, frame_id="c_optical")
    assert buffer.add_frame(frame) == "accepted"
    assert buffer.add_frame(frame) == "duplicate"
    (back,) = buffer.frames()
    assert back.rgb is frame.rgb and back.depth is frame.depth and back.depth_scale == 1.0
    np.testing.assert_allclose(back.pose, pose, atol=1e-12)
    np.testing.assert_array_equal(back.K, K)
    assert back.frame_id == "c_optical"
    assert_counters_consistent(buffer)


def test_short_bag_loop_resets_after_a_run_of_out_of_order_stamps():
    buffer = FrameBuffer(reset_jump=1.0, reset_after_drops=5)
    stamps = [0.0, 0.1, 0.2, 0.3, 0.4]  # a 0.4 s bag, shorter than reset_jump, played in a loop
    statuses = [buffer.add_image("c", stamp, rgb()) for stamp in stamps * 3]
    assert statuses[:5] == ["accepted"] * 5
    # second pass: 0.0 .. 0.3 are out of order, the 5th backwards stamp in a row (0.4 is a duplicate,
    # which does not count) is taken as a reset
    assert statuses[5:10] == ["out_of_order"] * 4 + ["duplicate"]
    assert statuses[10] == "accepted" and buffer.counters["resets"] == 1
    assert [f.stamp for f in buffer.frames()] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert_counters_consistent(buffer)
