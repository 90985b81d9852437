# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""spatial_mllm_node with the tiny checkpoint, as a real process over real DDS.

Camera frames (RGB + depth + camera_info + poses) are published from this process; questions come
back as typed SpatialAnswers carrying the stamps of the frames the model saw. Malformed images are
counted and dropped while the node keeps answering; with queue_size 1 a second question asked during
inference is answered at once with a "busy" rejection, never dropped.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.srv import GetParameters
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

from spatial_mllm_ros.ros.conversions import depth_to_image, rgb_to_image, sec_to_stamp, stamp_to_sec

NODE = "/spatial_mllm_node"
HEIGHT, WIDTH = 120, 160
STAMPS = [100.0 + 0.2 * i for i in range(6)]


@pytest.fixture(scope="module")
def domain_id():
    return random_domain_id()


@pytest.fixture(scope="module")
def node_process(domain_id, tmp_path_factory):
    model = tiny_model_dir()
    process = NodeProcess("spatial_mllm_ros.ros.qa_node",
                          ["--params-file", str(REPO_ROOT / "config" / "cpu.yaml"), "-p", "autostart:=true",
                           "-p", f"model_path:={model}", "-p", "max_frames:=4", "-p", "queue_size:=1",
                           "-p", "max_new_tokens:=4", "-p", "diagnostics_period_s:=0.2",
                           "-p", "qos.images.depth:=20"],
                          domain_id, tmp_path_factory.mktemp("qa") / "node.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(domain_id, node_process):
    ros = RosClient(domain_id)
    ros.diagnostics = ros.collect(DiagnosticArray, "/diagnostics")
    ros.selections = ros.collect(FrameSelection, f"{NODE}/selected_frames")
    ros.answers = ros.collect(SpatialAnswer, f"{NODE}/answer")
    ros.images = ros.publisher(Image, "/camera/color/image_raw")
    ros.depths = ros.publisher(Image, "/camera/depth/image_raw")
    ros.infos = ros.publisher(CameraInfo, "/camera/color/camera_info")
    ros.poses = ros.publisher(PoseStamped, "/camera/pose")
    wait_for_state(ros, NODE, "active", node_process, timeout=180.0)
    publishers = (ros.images, ros.depths, ros.infos, ros.poses)
    wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), 20.0,
               "the node's camera subscriptions")
    yield ros
    ros.close()


def _diagnostics(client) -> dict[str, str]:
    wait_until(lambda: status_values(client.diagnostics, NODE), 10.0, "a /diagnostics status of the node")
    return status_values(client.diagnostics, NODE)


def _wait_diagnostic(client, key: str, expected: int) -> dict[str, str]:
    def reached() -> bool:
        return int(status_values(client.diagnostics, NODE).get(key, "0")) >= expected

    wait_until(reached, 20.0, f"diagnostics {key} >= {expected}")
    return _diagnostics(client)


def _publish_scene(client) -> None:
    rng = np.random.default_rng(0)
    info = CameraInfo(height=HEIGHT, width=WIDTH, k=[100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera_color_optical_frame"
    client.infos.publish(info)
    for i, stamp in enumerate(STAMPS):
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = sec_to_stamp(stamp), "map"
        pose.pose.position.x, pose.pose.orientation.w = 0.3 * i, 1.0
        client.poses.publish(pose)
        depth = np.full((HEIGHT, WIDTH), 2.0 + 0.1 * i, np.float32)
        client.depths.publish(depth_to_image(depth, stamp=stamp, frame_id="camera_color_optical_frame"))
        rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        client.images.publish(rgb_to_image(rgb, stamp=stamp, frame_id="camera_color_optical_frame"))
        time.sleep(0.03)


def _ask(client, question, timeout=120.0, **fields) -> SpatialAnswer:
    request = AskSpatial.Request(question=question, **fields)
    return client.call(AskSpatial, f"{NODE}/ask", request, timeout=timeout).answer


def test_camera_frames_to_typed_answer_with_the_stamps_used(client):
    _publish_scene(client)
    _wait_diagnostic(client, "received_image", len(STAMPS))
    answer = _ask(client, "Which object is closer to the camera?", options=["the chair", "the table"],
                  query_id="closer-1")
    assert answer.error == ""
    assert answer.query_id == "closer-1"
    assert answer.task_type  # inferred by the engine
    kinds = (SpatialAnswer.KIND_CHOICE, SpatialAnswer.KIND_NUMBER, SpatialAnswer.KIND_TEXT,
             SpatialAnswer.KIND_NONE)
    assert answer.answer_kind in kinds
    assert answer.raw_text != ""
    stamps = [stamp_to_sec(s) for s in answer.frame_stamps]
    assert len(stamps) == 4  # max_frames from the node's parameter
    assert stamps == sorted(stamps)
    assert all(min(abs(s - t) for t in STAMPS) < 1e-6 for s in stamps)
    assert answer.model_id.startswith("ros_tiny_seed0")
    assert answer.backend == "torch-cpu"
    assert answer.generate_ms > 0 and answer.encode_ms > 0
    assert answer.header.frame_id == "camera_color_optical_frame"
    wait_until(lambda: client.selections, 10.0, "a FrameSelection")
    selection = client.selections[-1]
    assert [stamp_to_sec(s) for s in selection.stamps] == pytest.approx(stamps)
    assert selection.candidates == len(STAMPS)
    assert selection.method  # space_aware with depth + poses + K
    # A time window and a per-question frame count.
    windowed = _ask(client, "How far is the chair from the table?", window_start=sec_to_stamp(100.3),
                    window_end=sec_to_stamp(100.9), max_frames=2)
    assert windowed.error == ""
    window_stamps = [stamp_to_sec(s) for s in windowed.frame_stamps]
    assert len(window_stamps) == 2 and all(100.3 <= s <= 100.9 for s in window_stamps)
    empty = _ask(client, "How far is the chair from the table?", window_start=sec_to_stamp(500.0),
                 window_end=sec_to_stamp(600.0))
    assert empty.answer_kind == SpatialAnswer.KIND_NONE and "no camera frames" in empty.error
    assert any(a.query_id == "closer-1" and a.error == "" for a in client.answers)  # also on ~/answer


def _malformed_images() -> dict[str, Image]:
    wrong_step = rgb_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), stamp=200.1)
    wrong_step.step = WIDTH  # smaller than width * 3
    size_mismatch = rgb_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), stamp=200.2)
    size_mismatch.data = bytes(100)
    unknown_encoding = rgb_to_image(np.zeros((HEIGHT, WIDTH, 3), np.uint8), stamp=200.3)
    unknown_encoding.encoding = "yuv422_yuy2"
    empty = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3)
    empty.header.stamp = sec_to_stamp(200.4)
    return {"step": wrong_step, "size": size_mismatch, "encoding": unknown_encoding, "empty": empty}


def test_malformed_images_are_counted_and_dropped_while_the_node_keeps_answering(client, node_process):
    before = int(_diagnostics(client).get("malformed_image", "0"))
    for msg in _malformed_images().values():
        client.images.publish(msg)
        time.sleep(0.03)
    values = _wait_diagnostic(client, "malformed_image", before + 4)
    assert int(values["malformed_image"]) == before + 4
    for reason in ("bad_step", "size_mismatch", "unsupported_encoding", "empty_data"):
        assert int(values[f"malformed_image_{reason}"]) == 1, reason
    assert "last_error_malformed_image" in values
    assert int(values["buffer_frames"]) == len(STAMPS)  # none of them reached the buffer
    answer = _ask(client, "How many chairs are in the room?")
    assert answer.error == "" and len(answer.frame_stamps) == 4
    assert node_process.alive()


def test_busy_rejection_when_the_queue_is_full(client):
    # queue_size 1: while the first question is being answered, the others are refused at once.
    requests = [AskSpatial.Request(question=f"How far is object {i} from the door?", max_frames=4,
                                   query_id=f"busy-{i}") for i in range(3)]
    completion_order: list[str] = []
    futures = client.call_many_async(AskSpatial, f"{NODE}/ask", requests)
    for future in futures:
        future.add_done_callback(lambda f: completion_order.append(f.result().answer.query_id))
    # Parameter services keep answering while a question is being answered (separate callback groups).
    request = GetParameters.Request(names=["queue_size"])
    assert client.call(GetParameters, f"{NODE}/get_parameters", request).values[0].integer_value == 1
    wait_until(lambda: all(f.done() for f in futures), 120.0, "all three answers")
    answers = [f.result().answer for f in futures]
    assert [a.query_id for a in answers] == ["busy-0", "busy-1", "busy-2"]
    busy = [a for a in answers if a.error.startswith("busy")]
    answered = [a for a in answers if a.error == ""]
    assert len(busy) >= 1 and len(answered) >= 1 and len(busy) + len(answered) == 3
    assert all(a.answer_kind == SpatialAnswer.KIND_NONE and "capacity 1" in a.error for a in busy)
    # The rejections came back at once, before the question being answered finished.
    wait_until(lambda: len(completion_order) == 3, 10.0, "three completions")
    last_answered = max(completion_order.index(a.query_id) for a in answered)
    assert last_answered > max(completion_order.index(a.query_id) for a in busy)
    values = _wait_diagnostic(client, "questions_rejected_busy", len(busy))
    assert int(values["queue_size"]) == 1
