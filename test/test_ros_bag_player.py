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
