# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""bag_player as a real process: recordings published message for message, with /clock and recorded QoS."""

from __future__ import annotations

import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from ros_harness import NodeProcess, RosClient, random_domain_id, wait_until
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

from spatial_mllm_ros.bag.reader import read_frames
from spatial_mllm_ros.bag.scene import write_scene
from spatial_mllm_ros.ros.bag_player import open_bag
from spatial_mllm_ros.ros.conversions import depth_to_array, image_to_rgb, stamp_to_sec

FRAMES = 8


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # the node's default topics and a pose topic: this environment has no tf2_msgs to replay /tf with
    return write_scene(tmp_path_factory.mktemp("scene"), seed=3, width=80, height=60, num_frames=FRAMES,
                       pose_source="pose_topic")


@pytest.mark.parametrize("stored_as", ["jazzy", "humble_sqlite_without_definitions"])
def test_player_publishes_every_message_and_the_bag_clock(scene, tmp_path, stored_as):
    bag = scene.bag
    if stored_as != "jazzy":
        from test_bag_recording import humble_sqlite_bag

        bag = humble_sqlite_bag(scene.bag, tmp_path / "humble")
    domain_id = random_domain_id()
    client = RosClient(domain_id)
    try:
        images = client.collect(Image, "/camera/color/image_raw")
        depths = client.collect(Image, "/camera/depth/image_raw")
        infos = client.collect(CameraInfo, "/camera/color/camera_info")
        poses = client.collect(PoseStamped, "/camera/pose")
        clocks = client.collect(Clock, "/clock", qos=100)
        player = NodeProcess("spatial_mllm_ros.ros.bag_player",
                             ["-p", f"bag:={bag}", "-p", "rate:=4.0", "-p", "start_delay_s:=1.0",
                              "-p", "wait_for_subscribers_s:=30.0"],
                             domain_id, tmp_path / "player.log")
        try:
            player.process.wait(timeout=60)
        finally:
            assert player.stop() == 0, player.output()
        wait_until(lambda: len(images) == FRAMES and len(poses) == FRAMES, 10.0, "all frames")
    finally:
        client.close()
    recording = open_bag(bag)
    counts = {c.topic: c.message_count for c in recording.connections()}
    last_log_ns = max(log_time for _, _, log_time, _ in recording.messages())
    assert counts["/camera/color/image_raw"] == len(images) == FRAMES
    assert counts["/camera/depth/image_raw"] == len(depths)
    assert counts["/camera/color/camera_info"] == len(infos)
    assert counts["/camera/pose"] == len(poses)
    expected = list(read_frames(scene.bag))
    for frame, msg in zip(expected, images, strict=True):
        assert stamp_to_sec(msg.header.stamp) == pytest.approx(frame.stamp)
        np.testing.assert_array_equal(image_to_rgb(msg), frame.rgb)
    np.testing.assert_allclose(depth_to_array(depths[0])[0], expected[0].depth_m(), atol=1e-3)
    clock_times = [stamp_to_sec(c.clock) for c in clocks]
    assert clock_times == sorted(clock_times)
    assert clock_times[-1] == pytest.approx(last_log_ns / 1e9, abs=1e-6)
    assert "played" in player.output()


def test_bag_replay_into_the_node_on_sim_time(scene, tmp_path):
    """What bag_replay.launch.py does: player + node with use_sim_time, then a question about the bag."""
    import json

    from diagnostic_msgs.msg import DiagnosticArray
    from ros_harness import REPO_ROOT, status_values, tiny_model_dir, wait_for_state
    from spatial_mllm_ros.msg import FrameSelection
    from spatial_mllm_ros.srv import AskSpatial

    node_name = "/spatial_mllm_node"
    domain_id = random_domain_id()
    node = NodeProcess("spatial_mllm_ros.ros.qa_node",
                       ["--params-file", str(REPO_ROOT / "config" / "cpu.yaml"), "-p", "autostart:=true",
                        "-p", f"model_path:={tiny_model_dir()}", "-p", "use_sim_time:=true",
                        "-p", "max_frames:=4", "-p", "max_new_tokens:=4", "-p", "diagnostics_period_s:=0.2"],
                       domain_id, tmp_path / "node.log")
    client = RosClient(domain_id)
    try:
        diagnostics = client.collect(DiagnosticArray, "/diagnostics")
        selections = client.collect(FrameSelection, f"{node_name}/selected_frames")
        wait_for_state(client, node_name, "active", node, timeout=180.0)
        player = NodeProcess("spatial_mllm_ros.ros.bag_player",
                             ["-p", f"bag:={scene.bag}", "-p", "rate:=4.0", "-p", "start_delay_s:=1.0",
                              "-p", "wait_for_subscribers_s:=30.0"],
                             domain_id, tmp_path / "player.log")
        try:
            player.process.wait(timeout=60)
        finally:
            assert player.stop() == 0, player.output()

        def buffered() -> int:
            return int(status_values(diagnostics, node_name).get("buffer_frames", "0"))

        wait_until(lambda: buffered() == FRAMES, 20.0, "all bag frames in the node's buffer")
        row = json.loads(scene.questions.read_text())[0]
        request = AskSpatial.Request(question=row["question"], options=row["options"] or [],
                                     task_type=row["question_type"])
        answer = client.call(AskSpatial, f"{node_name}/ask", request, timeout=120.0).answer
        assert answer.error == "", answer.error
        assert answer.task_type == row["question_type"]
        bag_stamps = [frame.stamp for frame in read_frames(scene.bag)]
        used = [stamp_to_sec(s) for s in answer.frame_stamps]
        assert len(used) == 4 and all(min(abs(u - b) for b in bag_stamps) < 1e-6 for u in used)
        # The node's clock is the bag's /clock: the answer is stamped in recording time.
        assert bag_stamps[0] - 1.0 <= stamp_to_sec(answer.header.stamp) <= bag_stamps[-1] + 1.0
        wait_until(lambda: selections, 10.0, "a FrameSelection")
        assert 0.0 < selections[-1].coverage <= 1.0  # depth + intrinsics + poses from the bag were used
        assert not selections[-1].method.startswith("uniform")
    finally:
        client.close()
        node.stop()


def test_player_without_a_usable_bag_exits_with_the_reason(tmp_path):
    not_a_bag = tmp_path / "empty_dir"
    not_a_bag.mkdir()
    for bag, reason in (('""', "parameter 'bag' is required"), (str(tmp_path / "missing"), "no bag at"),
                        (str(not_a_bag), "holds no metadata.yaml and no .mcap/.db3 storage files")):
        player = NodeProcess("spatial_mllm_ros.ros.bag_player", ["-p", f"bag:={bag}"], random_domain_id(),
                             tmp_path / "player.log")
        player.process.wait(timeout=60)
        assert player.stop() == 1
        assert reason in player.output(), player.output()
    broken = NodeProcess("spatial_mllm_ros.ros.bag_player", ["-p", "bag:="], random_domain_id(),
                         tmp_path / "broken.log")
    broken.process.wait(timeout=60)
    assert broken.stop() == 2 and "cannot start ROS" in broken.output()


def _play(bag, tmp_path, name, *extra, domain_id=None):
    return NodeProcess("spatial_mllm_ros.ros.bag_player",
                       ["-p", f"bag:={bag}", "-p", "rate:=0.0", "-p", "start_delay_s:=1.0", *extra],
                       domain_id if domain_id is not None else random_domain_id(), tmp_path / f"{name}.log")


def test_transient_local_topics_reach_late_subscribers(tmp_path):
    """What robot_state_publisher and the static tf broadcasters offer is what the replay offers."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Writer
    from std_msgs.msg import String

    from spatial_mllm_ros.bag.writer import TF_QOS, TF_STATIC_QOS, jazzy_typestore

    bag = tmp_path / "latched"
    typestore = jazzy_typestore()
    with Writer(bag, version=9) as writer:
        latched = writer.add_connection("/robot_description", "std_msgs/msg/String", typestore=typestore,
                                        offered_qos_profiles=(TF_STATIC_QOS, TF_STATIC_QOS))
        volatile = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=typestore,
                                         offered_qos_profiles=(TF_QOS,))
        for i, (connection, text) in enumerate([(latched, "urdf part 1"), (latched, "urdf part 2"),
                                                (volatile, "hello")]):
            message = typestore.types["std_msgs/msg/String"](data=text)
            data = typestore.serialize_cdr(message, "std_msgs/msg/String")
            writer.write(connection, 1_000_000_000 + i, data)
    domain_id = random_domain_id()
    player = _play(bag, tmp_path, "latched", "-p", "exit_when_done:=false", domain_id=domain_id)
    client = RosClient(domain_id)
    try:
        wait_until(lambda: "played 3 messages" in player.output(), 30.0, "playback done")
        late = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
        descriptions = client.collect(String, "/robot_description", qos=late)
        chatter = client.collect(String, "/chatter", qos=late)
        wait_until(lambda: len(descriptions) == 2, 10.0, "both latched messages")
        time.sleep(0.5)
        assert [m.data for m in descriptions] == ["urdf part 1", "urdf part 2"] and chatter == []
    finally:
        client.close()
        assert player.stop() == 0, player.output()  # Ctrl-C ends the player cleanly
    assert "error" not in player.output().lower() and "Traceback" not in player.output()


def test_nothing_playable_is_an_error_with_the_reason(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_types_from_msg

    from spatial_mllm_ros.bag.writer import jazzy_typestore

    bag = tmp_path / "vendor_only"
    typestore = jazzy_typestore()
    typestore.register(get_types_from_msg("float64 torque", "vendor_msgs/msg/Joint"))
    with Writer(bag, version=9) as writer:
        connection = writer.add_connection("/arm/joint", "vendor_msgs/msg/Joint", typestore=typestore)
        message = typestore.types["vendor_msgs/msg/Joint"](torque=1.5)
        writer.write(connection, 1, typestore.serialize_cdr(message, "vendor_msgs/msg/Joint"))
    player = _play(bag, tmp_path, "nothing")
    player.process.wait(timeout=60)
    assert player.stop() == 1
    assert "nothing to play" in player.output() and "package vendor_msgs not installed" in player.output()
    wrong = _play(bag, tmp_path, "wrong", "-p", "topics:=['/camera/color/image_raw']")
    wrong.process.wait(timeout=60)
    assert wrong.stop() == 1 and "no topic /camera/color/image_raw in the bag" in wrong.output()


def test_ctrl_c_during_playback_is_a_clean_stop(scene, tmp_path):
    player = _play(scene.bag, tmp_path, "interrupted", "-p", "rate:=0.05", "-p", "start_delay_s:=0.0")
    wait_until(lambda: "playing" in player.output(), 30.0, "playback started")
    time.sleep(1.0)
    assert player.stop() == 0
    output = player.output()
    assert "Traceback" not in output and "playback stopped" not in output and "error" not in output.lower()
