# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""FrameBuffer: time association, pose interpolation, stamp policies, bounds and counters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.core.buffer import (
    DROP_REASONS,
    EVICTION_REASONS,
    KINDS,
    MAX_FRAME_ID_CHARS,
    FrameBuffer,
)

K = [[100.0, 0.0, 2.0], [0.0, 100.0, 1.5], [0.0, 0.0, 1.0]]


def rgb(value: int = 0, shape=(4, 5)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def rot_z(angle: float, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:3, 3] = translation
    return pose


def assert_counters_consistent(buffer: FrameBuffer, concurrent: bool = False) -> None:
    counters = buffer.counters  # one snapshot, taken under the buffer's lock
    for kind in KINDS:
        dropped = sum(counters[f"dropped_{kind}_{reason}"] for reason in DROP_REASONS)
        assert counters[f"received_{kind}"] == counters[f"accepted_{kind}"] + dropped \
            + counters[f"pending_{kind}"], kind
    for kind in ("image", "depth", "pose"):
        removed = sum(counters[f"evicted_{kind}_{reason}"] for reason in EVICTION_REASONS) \
            + counters[f"cleared_{kind}_reset"]
        assert counters[f"held_{kind}"] == counters[f"accepted_{kind}"] - removed, kind
    assert counters["held_bytes"] <= buffer.max_bytes
    if not concurrent:
        assert counters["held_bytes"] == buffer.nbytes


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
    # bag loop: camera c jumps back 10 s; once 3 messages agree everything is cleared and they start
    # the new timeline
    assert [buffer.add_image("c", s, rgb()) for s in (0.2, 0.22, 0.24)] == ["held", "held", "accepted"]
    assert [(f.camera_id, f.stamp) for f in buffer.frames()] == [("c", 0.2), ("c", 0.22), ("c", 0.24)]
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


def test_one_far_future_stamp_does_not_reset_the_buffer():
    buffer = FrameBuffer(max_frames=300, reset_jump=1.0)
    for i in range(150):
        buffer.add_image("cam", 10.0 + i / 30, rgb(), frame_id="cam_optical")
        buffer.add_pose(10.0 + i / 30, np.eye(4))
    newest = 10.0 + 149 / 30
    assert buffer.add_pose(newest + 5.0, np.eye(4)) == "accepted"  # the fuzzed PoseStamped, 5 s ahead
    assert buffer.add_image("cam", newest + 5.0, rgb()) == "accepted"  # and an image
    assert buffer.add_pose(newest + 1 / 30, np.eye(4)) == "accepted"  # the real stream goes on
    assert buffer.add_image("cam", newest + 1 / 30, rgb()) == "accepted"
    counters = buffer.counters
    assert counters["resets"] == 0 and len(buffer) == 151
    assert counters["evicted_image_stamp_jump"] == 1 and counters["evicted_pose_stamp_jump"] == 1
    assert buffer.frames()[-1].stamp == pytest.approx(newest + 1 / 30)
    assert buffer.frames()[-1].pose is not None  # the pose track was repaired too
    # a new stream whose first message is far ahead is undone the same way
    assert buffer.add_image("other", newest + 60.0, rgb()) == "accepted"
    assert buffer.add_image("other", newest + 0.05, rgb()) == "accepted"
    assert [f.stamp for f in buffer.frames("other")] == [pytest.approx(newest + 0.05)]
    assert buffer.counters["resets"] == 0
    assert_counters_consistent(buffer)


def test_a_jump_back_resets_only_when_several_messages_agree():
    buffer = FrameBuffer(reset_jump=1.0, reset_confirmations=3)
    for i in range(30):
        buffer.add_image("cam", 100.0 + i * 0.1, rgb())
    # one stale message from the past, then the stream goes on: no reset, the stray one is dropped
    assert buffer.add_image("cam", 3.0, rgb()) == "held"
    assert buffer.counters["pending_image"] == 1
    assert buffer.add_image("cam", 103.0, rgb()) == "accepted"
    assert buffer.counters["dropped_image_stamp_jump"] == 1 and buffer.counters["resets"] == 0
    # two stale messages that disagree with each other (not one new timeline) do not reset either
    assert [buffer.add_image("cam", s, rgb()) for s in (5.0, 2.0, 7.0)] == ["held"] * 3
    assert buffer.counters["resets"] == 0 and buffer.counters["pending_image"] == 1
    assert buffer.counters["dropped_image_stamp_jump"] == 3
    # a simulator reset: the clock restarts at 0 and keeps going
    statuses = [buffer.add_image("cam", s, rgb()) for s in (7.1, 7.2, 7.3)]
    assert statuses == ["held", "accepted", "accepted"]  # 7.0, 7.1, 7.2 confirm the new timeline
    assert buffer.counters["resets"] == 1 and [f.stamp for f in buffer.frames()] == [7.0, 7.1, 7.2, 7.3]
    assert_counters_consistent(buffer)


def test_a_pause_is_not_a_jump_and_slow_streams_keep_every_message():
    buffer = FrameBuffer(reset_jump=1.0)
    stamps = [0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 5.3, 5.4]  # camera paused 4.8 s
    assert [buffer.add_image("cam", s, rgb()) for s in stamps] == ["accepted"] * 8
    assert buffer.add_image("cam", 0.3, rgb()) == "held"  # old-timeline stamp after the jump settled
    assert len(buffer) == 8 and buffer.counters["resets"] == 0
    poses = [buffer.add_pose(float(t), np.eye(4)) for t in range(10)]  # a 1 Hz pose track, gaps = reset_jump
    assert poses == ["accepted"] * 10 and buffer.counters["held_pose"] == 10


def test_frames_the_engine_would_reject_never_enter():
    from spatial_mllm_ros.core.frames import frame_size_problem

    buffer = FrameBuffer()
    for i in range(155):
        assert buffer.add_image("cam", i * 0.03, rgb(i % 255, shape=(6, 8))) == "accepted"
    assert buffer.add_image("cam", 4.7, rgb(shape=(1, 1))) == "unusable_size"
    assert buffer.add_image("cam", 4.8, rgb(shape=(2, 401))) == "unusable_size"
    assert buffer.add_image("cam", 4.9, rgb(shape=(2, 400))) == "accepted"
    assert all(frame_size_problem(*f.rgb.shape[:2]) == "" for f in buffer.frames())
    assert buffer.counters["dropped_image_unusable_size"] == 2
    assert_counters_consistent(buffer)


def test_frame_ids_are_bounded_and_counted_in_the_bytes():
    buffer = FrameBuffer()
    image = rgb()
    assert buffer.add_image("cam", 1.0, image, frame_id="x" * MAX_FRAME_ID_CHARS) == "accepted"
    assert buffer.nbytes == image.nbytes + MAX_FRAME_ID_CHARS
    assert buffer.add_image("cam", 2.0, image, frame_id="x" * (1 << 20)) == "invalid_frame_id"
    assert buffer.add_image("cam", 3.0, image, frame_id=None) == "invalid_frame_id"
    assert buffer.counters["dropped_image_invalid_frame_id"] == 2 and len(buffer) == 1
    assert buffer.frames()[0].frame_id == "x" * MAX_FRAME_ID_CHARS
    tight = FrameBuffer(max_bytes=3 * (image.nbytes + 100))
    for i in range(10):
        tight.add_image("cam", float(i), image, frame_id="y" * 100)
    assert len(tight) == 3 and tight.nbytes == 3 * (image.nbytes + 100)
    assert_counters_consistent(tight)


def test_absurd_intrinsics_and_poses_are_rejected_with_a_reason():
    buffer = FrameBuffer()
    bad_k = {
        "out_of_bounds": [[1e-300, 0, 2], [0, 1e-300, 1], [0, 0, 1]],
        "out_of_bounds ": [[1e9, 0, 2], [0, 1e9, 1], [0, 0, 1]],
        "out_of_bounds  ": [[100, 0, 1e12], [0, 100, 1], [0, 0, 1]],
        "invalid_data": [[100, 0, 2], [5, 100, 1], [0, 0, 1]],
    }
    for reason, k in bad_k.items():
        assert buffer.set_intrinsics("cam", k) == reason.strip()
    assert buffer.set_intrinsics("cam", K) == "accepted"
    far = np.eye(4)
    far[:3, 3] = 1e300
    assert buffer.add_pose(1.0, far) == "out_of_bounds"
    huge_rotation = np.eye(4)
    huge_rotation[:3, :3] = [[1e200, -1e200, 0], [1e200, 1e200, 0], [0, 0, 1]]
    assert buffer.add_pose(1.0, huge_rotation) == "invalid_data"
    utm = np.eye(4)
    utm[:3, 3] = (4.5e5, 5.4e6, 120.0)  # a UTM map frame is fine
    assert buffer.add_pose(1.0, utm) == "accepted"
    counters = buffer.counters
    assert counters["dropped_camera_info_out_of_bounds"] == 3
    assert counters["dropped_camera_info_invalid_data"] == 1
    assert counters["dropped_pose_out_of_bounds"] == 1 and counters["dropped_pose_invalid_data"] == 1
    assert_counters_consistent(buffer)


def test_counters_are_consistent_snapshots_while_other_threads_write():
    import threading

    buffer = FrameBuffer(max_frames=20, max_bytes=50 * 60)
    stop = threading.Event()

    def writer(camera: str) -> None:
        i = 0
        while not stop.is_set():
            buffer.add_image(camera, i * 0.01, rgb())
            buffer.add_pose(i * 0.01, np.eye(4), camera_id=camera)
            i += 1

    threads = [threading.Thread(target=writer, args=(c,)) for c in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        for _ in range(200):
            assert_counters_consistent(buffer, concurrent=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_depth_and_intrinsics_must_fit_the_colour_image():
    buffer = FrameBuffer()
    assert buffer.add_depth("cam", 1.0, np.ones((480, 848), np.uint16)) == "accepted"  # before any image
    assert buffer.add_image("cam", 1.0, rgb(shape=(480, 640))) == "accepted"
    assert buffer.add_depth("cam", 1.2, np.ones((480, 848), np.uint16)) == "size_mismatch"  # unaligned
    k_848 = [[420.0, 0.0, 700.0], [0.0, 420.0, 240.0], [0.0, 0.0, 1.0]]  # principal point beyond 640
    assert buffer.set_intrinsics("cam", k_848) == "size_mismatch"
    assert buffer.add_image("cam", 1.5, rgb(shape=(480, 640))) == "accepted"
    assert buffer.add_depth("cam", 1.5, np.ones((480, 640), np.uint16)) == "accepted"  # aligned to colour
    assert buffer.set_intrinsics("cam", [[600.0, 0, 320.0], [0, 600.0, 240.0], [0, 0, 1]]) == "accepted"
    first, second = buffer.frames("cam")
    assert first.depth is None  # the 848x480 depth of the same stamp, buffered first, is not paired
    assert second.depth.shape == (480, 640) and second.K is not None
    counters = buffer.counters
    assert counters["dropped_depth_size_mismatch"] == 1 and counters["dropped_camera_info_size_mismatch"] == 1
    assert_counters_consistent(buffer)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(3, 40), position=st.integers(0, 39), jump=st.floats(1.0, 1e6),
       ahead=st.booleans(), kind=st.sampled_from(["image", "pose"]))
def test_property_one_stray_stamp_changes_nothing_once_the_stream_goes_on(count, position, jump, ahead, kind):
    stamps = [2e6 + i / 30 for i in range(count)]
    position %= count - 1  # at least one regular message follows the stray one
    clean, noisy = FrameBuffer(max_frames=100), FrameBuffer(max_frames=100)
    for i, stamp in enumerate(stamps):
        for buffer in (clean, noisy):
            buffer.add_image("cam", stamp, rgb())
            buffer.add_pose(stamp, np.eye(4))
        if i == position:
            stray = stamp + jump if ahead else stamp - jump
            if kind == "image":
                noisy.add_image("cam", stray, rgb())
            else:
                noisy.add_pose(stray, np.eye(4))
    assert noisy.counters["resets"] == 0
    expected = [(f.stamp, f.pose is None) for f in clean.frames()]
    assert [(f.stamp, f.pose is None) for f in noisy.frames()] == expected
    assert_counters_consistent(noisy)
