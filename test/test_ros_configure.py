# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Engines ready at configure, exactly one answer per question, and a clean exit on a double Ctrl-C.

Node processes over real DDS: with ``backend:=onnxruntime`` the ONNX graph of the visual encoder is on
disk when the node reports ``inactive`` (before any question), and questions with fewer frames than
``max_frames`` never export another one. A burst of ``~/question`` messages and ``~/ask`` calls gets
one ``SpatialAnswer`` each on ``~/answer``, rejections included. Two SIGINTs in a row (what a terminal
and ``ros2 launch`` send together) end the process with code 0 and no traceback.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
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
from spatial_mllm_ros.msg import SpatialAnswer
from spatial_mllm_ros.srv import AskSpatial
from std_msgs.msg import String

from spatial_mllm_ros.ros.conversions import rgb_to_image

NODE = "/spatial_mllm_node"
HEIGHT, WIDTH = 56, 84
PROFILE = str(REPO_ROOT / "config" / "cpu.yaml")


def _start(domain_id, log_dir, *params, env=None) -> NodeProcess:
    args = ["--params-file", PROFILE, "-p", "autostart:=true", "-p", "diagnostics_period_s:=0.2"]
    for param in params:
        args += ["-p", param]
    return NodeProcess("spatial_mllm_ros.ros.qa_node", args, domain_id, log_dir / "node.log", env=env)


def test_configure_builds_the_onnx_graph_before_the_first_question(tmp_path):
    domain_id = random_domain_id()
    cache = tmp_path / "cache"
    process = _start(
        domain_id,
        tmp_path,
        f"model_path:={tiny_model_dir()}",
        "backend:=onnxruntime",
        "selector:=uniform",
        "max_frames:=4",
        "max_new_tokens:=2",
        f"min_pixels:={28 * 28 * 4}",
        f"input_width:={WIDTH}",
        f"input_height:={HEIGHT}",
        env={"XDG_CACHE_HOME": str(cache)},
    )
    client = RosClient(domain_id)
    try:
        images = client.publisher(Image, "/camera/color/image_raw")
        wait_for_state(client, NODE, "active", process, timeout=300.0)
        graphs = sorted(cache.rglob("*.onnx"))
        assert len(graphs) == 1, f"expected one graph after configure, found {graphs}"
        built = {path: path.stat().st_mtime_ns for path in graphs}
        log = process.output()
        assert "prepared onnxruntime-cpu: 4 frames of 84x56" in log and "(1 exported)" in log
        wait_until(lambda: images.get_subscription_count() > 0, 20.0, "the image subscription")
        rng = np.random.default_rng(0)
        for i in range(3):  # fewer frames than max_frames: mapped onto the built shape
            rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
            images.publish(rgb_to_image(rgb, stamp=300.0 + 0.2 * i, frame_id="cam"))
            time.sleep(0.05)
        latencies = []
        for max_frames in (2, 4, 0):
            started = time.monotonic()
            request = AskSpatial.Request(question="How many chairs are there?", max_frames=max_frames)
            answer = client.call(AskSpatial, f"{NODE}/ask", request, timeout=120.0).answer
            latencies.append(time.monotonic() - started)
            assert answer.error == "" and answer.backend.startswith("onnxruntime"), answer.error
        assert {path: path.stat().st_mtime_ns for path in cache.rglob("*.onnx")} == built
        assert process.alive()
    finally:
        client.close()
        assert process.stop() == 0


def test_every_question_and_ask_gets_exactly_one_answer(tmp_path):
    domain_id = random_domain_id()
    process = _start(domain_id, tmp_path, 'model_path:=""', "warmup:=false", "queue_size:=2")
    client = RosClient(domain_id)
    try:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)
        answers = client.collect(SpatialAnswer, f"{NODE}/answer", qos)
        diagnostics = client.collect(DiagnosticArray, "/diagnostics")
        questions = client.node.create_publisher(String, f"{NODE}/question", qos)
        wait_for_state(client, NODE, "active", process)
        wait_until(
            lambda: (
                questions.get_subscription_count() > 0 and client.node.count_subscribers(f"{NODE}/answer") > 0
            ),
            20.0,
            "the question and answer topics",
        )
        texts = [
            json.dumps({"question": f"How far is chair {i}?", "query_id": f"topic-{i}"}) for i in range(60)
        ]
        texts[5] = '{"question": "q", "max_frames": 1e400, "query_id": "overflow"}'
        texts[6] = '{"question": ' + "[" * 100_000
        texts[7] = json.dumps({"question": "x", "options": ["o" * 1000] * 2, "query_id": "long-options"})
        texts[8] = json.dumps({"question": "x", "options": ["o" * 100_000] * 26, "query_id": "huge"})
        asks = [AskSpatial.Request(question=f"Where is table {i}?", query_id=f"ask-{i}") for i in range(20)]
        asks[3].max_frames = 256  # more than the profile's max_frames
        futures = client.call_many_async(AskSpatial, f"{NODE}/ask", asks)
        for text in texts:
            questions.publish(String(data=text))
        wait_until(lambda: all(f.done() for f in futures), 60.0, "every ~/ask response")
        wait_until(lambda: len(answers) >= len(texts) + len(asks), 60.0, "one answer per question")
        time.sleep(1.0)  # nothing more arrives
        assert len(answers) == len(texts) + len(asks)
        ids = [a.query_id for a in answers]
        for i in range(20):
            assert ids.count(f"ask-{i}") == 1
        assert ids.count("topic-0") == 1 and len(set(ids)) == len(ids)  # the node names unnamed questions
        responses = {f.result().answer.query_id: f.result().answer for f in futures}
        assert "max_frames 256 is outside" in responses["ask-3"].error
        # without a model the worker answers at once, so whether the queue ever fills depends on the
        # machine's load (the busy path itself is tested with a model in test_ros_qa); every rejection
        # still names its reason
        busy = [a for a in answers if a.error.startswith("busy")]
        assert all("capacity 2" in a.error for a in busy)
        assert all(a.error for a in answers)
        by_id = {a.query_id: a for a in answers}
        assert sum("1e400" in a.error and "out of range" in a.error for a in answers) == 1
        assert sum("nested 100001 deep" in a.error for a in answers) == 1
        assert by_id["long-options"].error.startswith("invalid_options")
        assert sum(a.error.startswith("too_large") for a in answers) == 1

        def counted() -> dict[str, str]:
            return status_values(diagnostics, NODE)

        wait_until(
            lambda: int(counted().get("questions_submitted", "0")) == len(texts) + len(asks),
            20.0,
            "every question counted",
        )
        values = counted()
        assert values["questions_dropped_before_queue"] == "0" and values["questions_pending"] == "0"
        rejected = sum(int(v) for k, v in values.items() if k.startswith("questions_rejected_"))
        assert rejected + int(values["questions_answered"]) == len(texts) + len(asks)
        assert rejected == sum(1 for a in answers if a.error and "no model loaded" not in a.error)
    finally:
        client.close()
        process.stop()


def test_a_question_while_inactive_is_answered_on_the_answer_topic_too(tmp_path):
    domain_id = random_domain_id()
    process = _start(domain_id, tmp_path, 'model_path:=""', "warmup:=false", "autostart:=false")
    client = RosClient(domain_id)
    try:
        answers = client.collect(SpatialAnswer, f"{NODE}/answer")
        wait_for_state(client, NODE, "unconfigured", process)
        wait_until(lambda: client.node.count_subscribers(f"{NODE}/answer") > 0, 20.0, "the answer topic")
        response = client.call(AskSpatial, f"{NODE}/ask", AskSpatial.Request(question="q?", query_id="early"))
        assert "node is unconfigured" in response.answer.error
        wait_until(lambda: len(answers) == 1, 10.0, "the rejection on ~/answer")
        assert answers[0].query_id == "early" and answers[0].error == response.answer.error
    finally:
        client.close()
        process.stop()


@pytest.mark.parametrize("gap_s", [0.0, 0.05, 0.3])
def test_double_sigint_exits_cleanly(tmp_path, gap_s):
    domain_id = random_domain_id()
    process = _start(domain_id, tmp_path, 'model_path:=""', "warmup:=false")
    client = RosClient(domain_id)
    try:
        wait_for_state(client, NODE, "active", process)
    finally:
        client.close()
    process.process.send_signal(signal.SIGINT)
    time.sleep(gap_s)
    process.process.send_signal(signal.SIGINT)
    code = process.process.wait(timeout=30)
    output = process.output()
    assert code == 0, output[-2000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    process.stop()


def test_configure_waits_for_the_first_camera_info_for_the_input_size(tmp_path):
    domain_id = random_domain_id()
    process = _start(
        domain_id,
        tmp_path,
        f"model_path:={tiny_model_dir()}",
        "selector:=uniform",
        "max_frames:=2",
        "max_new_tokens:=2",
        f"min_pixels:={28 * 28 * 4}",
        "camera_info_timeout_s:=60.0",
    )
    client = RosClient(domain_id)
    try:
        infos = client.publisher(CameraInfo, "/camera/color/camera_info")
        deadline = time.monotonic() + 120
        while (
            "camera_info_probe" not in "".join(client.node.get_node_names()) and time.monotonic() < deadline
        ):
            assert process.alive(), process.output()[-2000:]
            time.sleep(0.1)
        info = CameraInfo(width=WIDTH, height=HEIGHT, k=[50.0, 0, 42.0, 0, 50.0, 28.0, 0, 0, 1.0])
        wait_until(lambda: infos.get_subscription_count() > 0, 30.0, "the configure-time camera_info probe")
        infos.publish(info)
        wait_for_state(client, NODE, "active", process, timeout=120.0)
        assert "prepared torch-cpu: 2 frames of 84x56" in process.output(), process.output()
    finally:
        client.close()
        process.stop()
