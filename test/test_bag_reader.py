# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reading frames from real rosbag2 files: round trips, another writer's bare .mcap, damage."""

from __future__ import annotations

import io
import json
import logging
import shutil
import struct

import numpy as np
import pytest
from mcap_ros2.writer import Writer as McapRos2Writer
from PIL import Image

from spatial_mllm_ros.bag.reader import BagReadError, NotABagError, choose_topics, read_frames
from spatial_mllm_ros.bag.scene import make_scene, write_scene
from spatial_mllm_ros.bag.writer import CameraBagWriter, jazzy_typestore
from spatial_mllm_ros.core.geometry import pose_from_translation_quaternion

WIDTH, HEIGHT, FRAMES = 64, 48, 12
HALF_SQRT2 = 0.7071067811865476


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=5, width=WIDTH, height=HEIGHT, num_frames=FRAMES)


@pytest.fixture(scope="module")
def mcap_scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("mcap"), seed=5, width=WIDTH, height=HEIGHT, num_frames=FRAMES,
                       storage="mcap")


@pytest.mark.parametrize(("storage", "depth_encoding"), [("sqlite3", "32FC1"), ("mcap", "16UC1")])
def test_round_trip_equals_the_rendered_scene(tmp_path, scene, storage, depth_encoding):
    paths = write_scene(tmp_path, seed=5, width=WIDTH, height=HEIGHT, num_frames=FRAMES, storage=storage,
                        depth_encoding=depth_encoding)
    frames = list(read_frames(paths.bag))
    assert len(frames) == FRAMES
    for index, frame in enumerate(frames):
        rgb, depth, _ = scene.render(index)
        assert frame.stamp == pytest.approx(scene.stamps[index], abs=1e-9)
        assert frame.camera_id == "camera" and frame.frame_id == "camera_color_optical_frame"
        assert np.array_equal(frame.rgb, rgb)
        if depth_encoding == "32FC1":
            assert frame.depth.dtype == np.float32 and frame.depth_scale == 1.0
            assert np.array_equal(frame.depth, depth)
        else:
            assert frame.depth.dtype == np.uint16 and frame.depth_scale == 0.001
            assert np.abs(frame.depth_m() - depth).max() <= 0.0005 + 1e-6
        np.testing.assert_allclose(frame.K, scene.intrinsics)
        np.testing.assert_allclose(frame.pose, scene.poses[index], atol=1e-9)


def test_storage_file_path_and_time_window(mcap_scene, scene):
    frames = list(read_frames(mcap_scene.bag / "bag.mcap", start=scene.stamps[3], end=scene.stamps[6]))
    assert [f.stamp for f in frames] == pytest.approx(list(scene.stamps[3:7]))


def test_nearest_stamp_association(tmp_path):
    bag = tmp_path / "assoc"
    rgb = np.zeros((4, 6, 3), np.uint8)
    k = np.array([[5.0, 0, 3], [0, 5.0, 2], [0, 0, 1]])
    with CameraBagWriter(bag) as writer:
        writer.write_camera_info(0.95, k, 6, 4)  # once, before everything (latched-style)
        for i in range(10):
            stamp = 1.0 + 0.1 * i
            writer.write_rgb(stamp, rgb + i)
            if i != 4:  # frame 4 has no depth; the others get theirs 5 ms late
                writer.write_depth(stamp + 0.005, np.full((4, 6), float(i), np.float32))
        for j in range(21):  # poses at 20 Hz starting 1 ms late: x encodes the pose time
            stamp = 1.001 + 0.05 * j
            pose = np.eye(4)
            pose[0, 3] = stamp
            writer.write_pose(stamp, pose)
    frames = list(read_frames(bag, pose_tolerance=0.01))
    assert len(frames) == 10
    for i, frame in enumerate(frames):
        assert frame.rgb[0, 0, 0] == i
        if i == 4:
            assert frame.depth is None
        else:
            assert frame.depth[0, 0] == i
        np.testing.assert_allclose(frame.K, k)
        assert frame.pose[0, 3] == pytest.approx(frame.stamp + 0.001)
    # without pose/depth topics the frames carry only colour (+ intrinsics)
    bare = list(read_frames(bag, depth_topic=None, pose_topic="/nope"))
    assert all(f.depth is None and f.pose is None and f.K is not None for f in bare)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bare_mcap_from_mcap_ros2_support(tmp_path):
    typestore = jazzy_typestore()
    path = tmp_path / "other_writer.mcap"
    rng = np.random.default_rng(1)
    colours = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)]
    depths_mm = [rng.integers(300, 5000, (HEIGHT, WIDTH)).astype(np.uint16) for _ in range(4)]
    with path.open("wb") as stream:
        writer = McapRos2Writer(stream)
        schemas = {name: writer.register_msgdef(name, typestore.generate_msgdef(name, ros_version=2)[0])
                   for name in ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image",
                                "sensor_msgs/msg/CameraInfo", "nav_msgs/msg/Odometry")}
        for i in range(4):
            sec, nanosec = 100 + i, 500_000_000
            log_time = sec * 1_000_000_000 + nanosec
            header = {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": "cam"}
            writer.write_message("/cam/image/compressed", schemas["sensor_msgs/msg/CompressedImage"],
                                 {"header": header, "format": "png", "data": _png(colours[i])},
                                 log_time=log_time)
            writer.write_message("/cam/depth", schemas["sensor_msgs/msg/Image"],
                                 {"header": header, "height": HEIGHT, "width": WIDTH, "encoding": "16UC1",
                                  "is_bigendian": 0, "step": WIDTH * 2, "data": depths_mm[i].tobytes()},
                                 log_time=log_time)
            writer.write_message("/cam/info", schemas["sensor_msgs/msg/CameraInfo"],
                                 {"header": header, "height": HEIGHT, "width": WIDTH,
                                  "distortion_model": "plumb_bob", "d": [0.0] * 5,
                                  "k": [50.0, 0, 31.5, 0, 50.0, 23.5, 0, 0, 1],
                                  "r": [1.0, 0, 0, 0, 1, 0, 0, 0, 1], "p": [0.0] * 12}, log_time=log_time)
            writer.write_message("/odom", schemas["nav_msgs/msg/Odometry"],
                                 {"header": header, "child_frame_id": "cam",
                                  "pose": {"pose": {"position": {"x": float(i), "y": 0.0, "z": 1.0},
                                                    "orientation": {"x": 0.0, "y": 0.0, "z": HALF_SQRT2,
                                                                    "w": HALF_SQRT2}}}},
                                 log_time=log_time)
        writer.finish()
    frames = list(read_frames(path, image_topic="/cam/image", depth_topic="/cam/depth",
                              info_topic="/cam/info", pose_topic="/odom"))
    assert len(frames) == 4
    expected_rotation = pose_from_translation_quaternion((0, 0, 0), (0, 0, HALF_SQRT2, HALF_SQRT2))
    for i, frame in enumerate(frames):
        assert frame.stamp == pytest.approx(100 + i + 0.5)
        assert np.array_equal(frame.rgb, colours[i])  # via /compressed, decoded with PIL
        assert np.array_equal(frame.depth, depths_mm[i]) and frame.depth_scale == 0.001
        assert frame.K[0, 0] == 50.0 and frame.K[1, 2] == 23.5
        np.testing.assert_allclose(frame.pose[:3, 3], [i, 0, 1])
        np.testing.assert_allclose(frame.pose[:3, :3], expected_rotation[:3, :3], atol=1e-12)


def test_compressed_depth_png_is_decoded(tmp_path):
    typestore = jazzy_typestore()
    path = tmp_path / "compressed_depth.mcap"
    depth_mm = np.arange(WIDTH * HEIGHT, dtype=np.uint16).reshape(HEIGHT, WIDTH) + 400
    with path.open("wb") as stream:
        writer = McapRos2Writer(stream)
        image_schema = writer.register_msgdef(
            "sensor_msgs/msg/Image", typestore.generate_msgdef("sensor_msgs/msg/Image", ros_version=2)[0])
        compressed_schema = writer.register_msgdef(
            "sensor_msgs/msg/CompressedImage",
            typestore.generate_msgdef("sensor_msgs/msg/CompressedImage", ros_version=2)[0])
        header = {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "cam"}
        writer.write_message("/camera/color/image_raw", image_schema,
                             {"header": header, "height": HEIGHT, "width": WIDTH, "encoding": "bgr8",
                              "is_bigendian": 0, "step": WIDTH * 3,
                              "data": np.full((HEIGHT, WIDTH, 3), (10, 20, 30), np.uint8).tobytes()},
                             log_time=1_000_000_000)
        payload = struct.pack("<iff", 0, 0.0, 0.0) + _png(depth_mm)
        writer.write_message("/camera/depth/image_raw/compressedDepth", compressed_schema,
                             {"header": header, "format": "16UC1; compressedDepth png", "data": payload},
                             log_time=1_000_000_000)
        writer.finish()
    (frame,) = read_frames(path)
    assert tuple(frame.rgb[0, 0]) == (30, 20, 10)  # bgr8 -> rgb
    assert np.array_equal(frame.depth, depth_mm) and frame.depth_scale == 0.001
    assert frame.K is None and frame.pose is None


def test_truncated_mcap_yields_what_was_read_then_raises(tmp_path, caplog):
    # rosbags writes ~1 MB chunks: 24 frames of 160x120 RGB + float depth make a few of them
    paths = write_scene(tmp_path / "scene", seed=5, width=160, height=120, num_frames=24, storage="mcap")
    damaged = tmp_path / "bag"
    shutil.copytree(paths.bag, damaged)
    storage = damaged / "bag.mcap"
    storage.write_bytes(storage.read_bytes()[: int(storage.stat().st_size * 0.6)])
    frames = []
    damaged_text = r"damaged or truncated .*; \d+ frame\(s\) were read"
    with caplog.at_level(logging.WARNING), pytest.raises(BagReadError, match=damaged_text):
        for frame in read_frames(damaged):
            frames.append(frame)
    assert 3 <= len(frames) < 24
    assert "front to back" in caplog.text
    # the frames read before the damage are the real ones
    intact = list(read_frames(paths.bag))
    for got, want in zip(frames, intact, strict=False):
        assert got.stamp == want.stamp and np.array_equal(got.rgb, want.rgb)


def test_truncated_sqlite_and_garbage_files_raise_clear_errors(tmp_path):
    paths = write_scene(tmp_path / "sq", seed=2, width=32, height=24, num_frames=6)
    storage = paths.bag / "bag.db3"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    with pytest.raises(BagReadError, match=r"cannot be read: bag\.db3: cannot be opened .*malformed"):
        list(read_frames(paths.bag))
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"definitely not an mcap file" * 10)
    with pytest.raises(BagReadError, match=r"garbage\.mcap: cannot be read \(InvalidMagic"):
        list(read_frames(garbage))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(NotABagError, match=r"no metadata\.yaml and no \.mcap/\.db3"):
        list(read_frames(tmp_path / "empty_dir"))
    with pytest.raises(FileNotFoundError):
        list(read_frames(tmp_path / "missing"))


def test_unknown_image_topic_lists_the_topics(mcap_scene):
    with pytest.raises(ValueError, match=r"'/nope' is not in .*/camera/color/image_raw"):
        list(read_frames(mcap_scene.bag, image_topic="/nope"))


def test_tf_only_recording_equals_the_pose_topic_recording(tmp_path):
    robot = write_scene(tmp_path / "robot", seed=6, width=WIDTH, height=HEIGHT, num_frames=FRAMES,
                        depth_encoding="16UC1")
    posed = write_scene(tmp_path / "posed", seed=6, width=WIDTH, height=HEIGHT, num_frames=FRAMES,
                        depth_encoding="16UC1", pose_source="pose_topic", storage="mcap")
    details = {}
    from_tf = list(read_frames(robot.bag, details=details))
    from_topic = list(read_frames(posed.bag))
    assert details["topics"].pose_kind == "tf"
    assert details["topics"].depth == "/camera/camera/aligned_depth_to_color/image_raw"
    assert len(from_tf) == len(from_topic) == FRAMES
    for a, b in zip(from_tf, from_topic, strict=True):
        assert a.stamp == b.stamp and a.frame_id == b.frame_id == "camera_color_optical_frame"
        np.testing.assert_allclose(a.pose, b.pose, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.K, b.K)
    # /tf named as the pose topic means the same thing; a fixed frame can be chosen
    explicit = list(read_frames(robot.bag, pose_topic="/tf"))
    np.testing.assert_allclose(explicit[3].pose, from_tf[3].pose, atol=1e-12)
    in_odom = list(read_frames(robot.bag, fixed_frame="odom"))
    map_from_odom = np.asarray(json.loads(robot.scene_json.read_text())["bag"]["tf"]["map_from_odom"])
    np.testing.assert_allclose(map_from_odom @ in_odom[3].pose, from_tf[3].pose, atol=1e-9)


def test_choose_topics_finds_streams_and_asks_only_when_ambiguous():
    realsense = {
        "/camera/camera/color/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera/color/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/camera/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/camera/depth/image_rect_raw": "sensor_msgs/msg/Image",
        "/camera/camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/camera/aligned_depth_to_color/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera/infra1/image_rect_raw": "sensor_msgs/msg/Image",
        "/camera/camera/infra1/camera_info": "sensor_msgs/msg/CameraInfo",
        "/odom": "nav_msgs/msg/Odometry",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
    }
    choice = choose_topics(realsense)
    assert (choice.image, choice.depth, choice.info) == (
        "/camera/camera/color/image_raw", "/camera/camera/aligned_depth_to_color/image_raw",
        "/camera/camera/color/camera_info")
    assert (choice.pose_kind, choice.pose) == ("tf", "/tf+/tf_static")
    without_tf = {k: v for k, v in realsense.items() if not k.startswith("/tf")}
    assert choose_topics(without_tf).pose == "/odom"
    two = {**realsense, "/arm_cam/color/image_raw": "sensor_msgs/msg/Image",
           "/arm_cam/color/camera_info": "sensor_msgs/msg/CameraInfo",
           "/arm_cam/depth/image_raw": "sensor_msgs/msg/Image"}
    with pytest.raises(ValueError, match=r"several cameras \(/arm_cam/color/image_raw, "
                                         r"/camera/camera/color/image_raw\): pass --camera"):
        choose_topics(two)
    arm = choose_topics(two, camera="arm_cam")
    assert (arm.image, arm.depth, arm.info) == ("/arm_cam/color/image_raw", "/arm_cam/depth/image_raw",
                                                "/arm_cam/color/camera_info")
    with pytest.raises(ValueError, match="no colour image topic of camera 'nope'"):
        choose_topics(two, camera="nope")
    with pytest.raises(ValueError, match=r"carries sensor_msgs/msg/CameraInfo, not one of"):
        choose_topics(realsense, pose_topic="/camera/camera/color/camera_info")
    compressed_only = {"/cam/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
                       "/cam/camera_info": "sensor_msgs/msg/CameraInfo"}
    assert choose_topics(compressed_only).image == "/cam/image_raw/compressed"


def write_yuv_mcap(path):
    """Three 4x2 yuv422 colour images on the usual topic: right topic, unsupported encoding."""
    typestore = jazzy_typestore()
    with path.open("wb") as stream:
        writer = McapRos2Writer(stream)
        schema = writer.register_msgdef("sensor_msgs/msg/Image",
                                        typestore.generate_msgdef("sensor_msgs/msg/Image", ros_version=2)[0])
        for i in range(3):
            writer.write_message("/camera/color/image_raw", schema,
                                 {"header": {"stamp": {"sec": 1 + i, "nanosec": 0}, "frame_id": "cam"},
                                  "height": 2, "width": 4, "encoding": "yuv422", "is_bigendian": 0, "step": 8,
                                  "data": bytes(16)}, log_time=(1 + i) * 1_000_000_000)
        writer.finish()
    return path


def test_an_unsupported_encoding_on_the_right_topic_says_so(tmp_path):
    path = write_yuv_mcap(tmp_path / "yuv.mcap")
    with pytest.raises(ValueError, match=r"no image of /camera/color/image_raw could be decoded: "
                                         r"/camera/color/image_raw: unsupported colour encoding 'yuv422'.* "
                                         r"\(3 message\(s\)\)"):
        list(read_frames(path))
