# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""bag_player as a real process: a synthetic scene bag is published message for message, with /clock."""

from __future__ import annotations

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
    return write_scene(tmp_path_factory.mktemp("scene"), seed=3, width=80, height=60, num_frames=FRAMES)


def test_player_publishes_every_message_and_the_bag_clock(scene, tmp_path):
    domain_id = random_domain_id()
    client = RosClient(domain_id)
    try:
        images = client.collect(Image, "/camera/color/image_raw")
        depths = client.collect(Image, "/camera/depth/image_raw")
        infos = client.collect(CameraInfo, "/camera/color/camera_info")
        poses = client.collect(PoseStamped, "/camera/pose")
        clocks = client.collect(Clock, "/clock", qos=100)
        player = NodeProcess("spatial_mllm_ros.ros.bag_player",
                             ["-p", f"bag:={scene.bag}", "-p", "rate:=4.0", "-p", "start_delay_s:=2.0"],
                             domain_id, tmp_path / "player.log")
        try:
            player.process.wait(timeout=60)
        finally:
            assert player.stop() == 0, player.output()
        wait_until(lambda: len(images) == FRAMES and len(poses) == FRAMES, 10.0, "all frames")
    finally:
        client.close()
    reader = open_bag(scene.bag)
    try:
        counts = {c.topic: c.msgcount for c in reader.connections}
        last_log_ns = reader.end_time - 1
    finally:
        reader.close()
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
                             ["-p", f"bag:={scene.bag}", "-p", "rate:=4.0", "-p", "start_delay_s:=2.0"],
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
                        (str(not_a_bag), "without metadata.yaml")):
        player = NodeProcess("spatial_mllm_ros.ros.bag_player", ["-p", f"bag:={bag}"], random_domain_id(),
                             tmp_path / "player.log")
        player.process.wait(timeout=60)
        assert player.stop() == 1
        assert reason in player.output(), player.output()
    broken = NodeProcess("spatial_mllm_ros.ros.bag_player", ["-p", "bag:="], random_domain_id(),
                         tmp_path / "broken.log")
    broken.process.wait(timeout=60)
    assert broken.stop() == 2 and "cannot start ROS" in broken.output()
