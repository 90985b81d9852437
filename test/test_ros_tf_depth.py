# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""tf poses at query time (a transform that arrives after its image still counts) and depth/K checks.

A node process with ``pose_source: tf`` gets images, depth and camera info over real DDS and real
``tf2_msgs/TFMessage`` on ``/tf`` and ``/tf_static`` (built into the venv from its definition where ROS
has no tf2_msgs), published only after the images. The frame selection of the answers shows whether the
frames had poses: ``space_aware`` needs them, without them it falls back to uniform.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import (
    REPO_ROOT,
    NodeProcess,
    RosClient,
    random_domain_id,
    status_values,
    tiny_model_dir,
    wait_for_state,
    wait_until,
)
from sensor_msgs.msg import CameraInfo, Image
from spatial_mllm_ros.msg import FrameSelection, SpatialAnswer
from spatial_mllm_ros.srv import AskSpatial
from tf2_msgs.msg import TFMessage

from spatial_mllm_ros.ros.conversions import depth_to_image, rgb_to_image, sec_to_stamp

NODE = "/spatial_mllm_node"
HEIGHT, WIDTH = 120, 160
STAMPS = [200.0 + 0.2 * i for i in range(6)]
OPTICAL = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def domain_id():
    return random_domain_id()


@pytest.fixture(scope="module")
def node_process(domain_id, tmp_path_factory):
    process = NodeProcess(
        "spatial_mllm_ros.ros.qa_node",
        [
            "--params-file",
            str(REPO_ROOT / "config" / "cpu.yaml"),
            "-p",
            "autostart:=true",
            "-p",
            f"model_path:={tiny_model_dir()}",
            "-p",
            "max_frames:=4",
            "-p",
            "max_new_tokens:=2",
            "-p",
            "diagnostics_period_s:=0.2",
            "-p",
            f"input_width:={WIDTH}",
            "-p",
            f"input_height:={HEIGHT}",
            "-p",
            "camera.pose_source:=tf",
            "-p",
            "tf.target_frame:=map",
            "-p",
            "tf.timeout_s:=0.5",
            "-p",
            "qos.images.depth:=20",
        ],
        domain_id,
        tmp_path_factory.mktemp("tf") / "node.log",
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(domain_id, node_process):
    ros = RosClient(domain_id)
    ros.diagnostics = ros.collect(DiagnosticArray, "/diagnostics")
    ros.selections = ros.collect(FrameSelection, f"{NODE}/selected_frames")
    ros.images = ros.publisher(Image, "/camera/color/image_raw")
    ros.depths = ros.publisher(Image, "/camera/depth/image_raw")
    ros.infos = ros.publisher(CameraInfo, "/camera/color/camera_info")
    ros.tf = ros.node.create_publisher(
        TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    ros.tf_static = ros.node.create_publisher(
        TFMessage,
        "/tf_static",
        QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        ),
    )
    wait_for_state(ros, NODE, "active", node_process, timeout=180.0)
    wait_until(
        lambda: all(p.get_subscription_count() > 0 for p in (ros.images, ros.depths, ros.infos, ros.tf)),
        20.0,
        "the node's camera and tf subscriptions",
    )
    yield ros
    ros.close()


def _values(client, key: str, expected: int) -> dict[str, str]:
    wait_until(
        lambda: int(status_values(client.diagnostics, NODE).get(key, "0")) >= expected,
        20.0,
        f"diagnostics {key} >= {expected}",
    )
    return status_values(client.diagnostics, NODE)


def _info(width: int = WIDTH, height: int = HEIGHT, cx: float = 80.0) -> CameraInfo:
    info = CameraInfo(width=width, height=height, k=[100.0, 0.0, cx, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0])
    info.header.frame_id = OPTICAL
    return info


def _transform(parent: str, child: str, stamp: float, x: float, yaw: float = 0.0) -> TransformStamped:
    transform = TransformStamped()
    transform.header.frame_id, transform.child_frame_id = parent, child
    transform.header.stamp = sec_to_stamp(stamp)
    transform.transform.translation.x = x
    transform.transform.rotation.z, transform.transform.rotation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return transform


def _ask(client, query_id: str) -> tuple[SpatialAnswer, FrameSelection]:
    before = len(client.selections)
    request = AskSpatial.Request(question="How many chairs are in the room?", query_id=query_id)
    answer = client.call(AskSpatial, f"{NODE}/ask", request, timeout=120.0).answer
    wait_until(lambda: len(client.selections) > before, 10.0, "the frame selection")
    return answer, client.selections[-1]


def test_poses_are_looked_up_in_tf_when_the_question_is_answered(client):
    client.infos.publish(_info())
    rng = np.random.default_rng(1)
    for i, stamp in enumerate(STAMPS):
        depth = np.full((HEIGHT, WIDTH), 1.5 + 0.2 * i, np.float32)
        client.depths.publish(depth_to_image(depth, stamp=stamp, frame_id=OPTICAL))
        rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        client.images.publish(rgb_to_image(rgb, stamp=stamp, frame_id=OPTICAL))
        time.sleep(0.03)
    _values(client, "accepted_image", len(STAMPS))
    # No transform yet: the frames have no pose, selection falls back to uniform.
    answer, selection = _ask(client, "before-tf")
    assert answer.error == "" and answer.query_id == "before-tf"
    assert selection.method.startswith("uniform (fallback"), selection.method
    assert int(_values(client, "tf_unavailable", len(STAMPS))["tf_unavailable"]) >= len(STAMPS)
    # The transforms arrive late (after the images): map -> odom static, odom -> optical per stamp.
    client.tf_static.publish(TFMessage(transforms=[_transform("map", "odom", 0.0, 0.5)]))
    client.tf.publish(
        TFMessage(
            transforms=[
                _transform("odom", OPTICAL, stamp, 0.4 * i, yaw=0.3 * i) for i, stamp in enumerate(STAMPS)
            ]
        )
    )
    values = _values(client, "tf_transforms", len(STAMPS))
    assert int(values["tf_static_transforms"]) == 1
    answer, selection = _ask(client, "after-tf")
    assert answer.error == ""
    assert selection.method == "space_aware", selection.method
    assert math.isfinite(selection.coverage) and selection.coverage > 0
    # A malformed transform is counted by reason, not stored.
    bad = _transform("odom", OPTICAL, STAMPS[-1] + 0.1, 0.0)
    bad.transform.rotation.w = 0.0
    client.tf.publish(TFMessage(transforms=[bad]))
    values = _values(client, "malformed_tf_denormalized_quaternion", 1)
    assert int(values["messages_tf"]) == 2


def test_depth_and_camera_info_must_match_the_colour_stream(client):
    before = status_values(client.diagnostics, NODE)

    def count(key: str) -> int:
        return int(before.get(key, "0"))

    stamp = STAMPS[-1] + 1.0
    client.images.publish(rgb_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), stamp=stamp, frame_id=OPTICAL))
    _values(client, "accepted_image", count("accepted_image") + 1)
    # unaligned depth (another resolution) and a K of another stream are refused with the reason
    client.depths.publish(depth_to_image(np.ones((HEIGHT // 2, WIDTH // 2), np.float32), stamp=stamp))
    client.infos.publish(_info(width=2 * WIDTH, height=2 * HEIGHT, cx=160.0))
    client.infos.publish(_info(cx=500.0))
    values = _values(
        client, "malformed_depth_size_mismatch_color", count("malformed_depth_size_mismatch_color") + 1
    )
    values = _values(client, "malformed_camera_info", count("malformed_camera_info") + 2)
    assert (
        int(values["malformed_camera_info_size_mismatch_color"])
        == count("malformed_camera_info_size_mismatch_color") + 1
    )
    assert (
        int(values["malformed_camera_info_principal_point_outside"])
        == count("malformed_camera_info_principal_point_outside") + 1
    )
    assert "aligned_depth_to_color" in values["last_error_malformed_depth"]


def test_one_tf_listener_per_activation(client, node_process):
    assert client.tf.get_subscription_count() == 1
    assert client.change_state(NODE, "deactivate")
    wait_until(lambda: client.tf.get_subscription_count() == 0, 10.0, "the tf listener to go")
    assert client.change_state(NODE, "activate")
    wait_until(lambda: client.tf.get_subscription_count() == 1, 10.0, "one tf listener")
    time.sleep(0.5)
    assert client.tf.get_subscription_count() == 1 and client.tf_static.get_subscription_count() == 1
    assert node_process.alive()
