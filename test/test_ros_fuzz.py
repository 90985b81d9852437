# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Nothing on the bus kills or poisons a node: >= 10,000 generated malformed messages over real DDS.

Hypothesis strategies (:mod:`ros_fuzz`, derandomized: the same messages every run) feed every input of
a QA node process (raw, compressed and depth images, camera info, PoseStamped, Odometry, ``/tf``,
``/tf_static``, ``~/question``, ``~/ask``) and of a reward node process (its camera and
``ScoreTrajectory`` goals), plus each row of the issue's table. Afterwards both processes are alive,
no callback raised, the counters account for every message (received = malformed + buffered, per
input; one answer per question), and a normal question / goal gets a normal answer.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_fuzz import (
    ask_requests,
    camera_infos,
    compressed_images,
    good_frame_burst,
    odometries,
    pose_stampeds,
    question_texts,
    raw_images,
    score_goals,
    table_rows,
    tf_messages,
)
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
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from spatial_mllm_ros.action import ScoreTrajectory
from spatial_mllm_ros.msg import SpatialAnswer
from spatial_mllm_ros.srv import AskSpatial
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from spatial_mllm_ros.reward.synthetic import write_push_bag
from spatial_mllm_ros.ros.conversions import sec_to_stamp

pytestmark = pytest.mark.slow
QA = "/spatial_mllm_node"
REWARD = "/fuzz/reward_annotator_node"
BATCH = 50
MAX_LAG = 90  # below the node's ~/question history of 100
DEEP = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2000, reliability=ReliabilityPolicy.RELIABLE)
STATIC = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# input -> (message type, topic, strategy, messages, diagnostics kind)
QA_INPUTS = {
    "image": (Image, "/camera/color/image_raw", raw_images(), 2000, "image"),
    "head_image": (Image, "/head/color/image_raw", raw_images(), 500, "image"),
    "compressed": (CompressedImage, "/wrist/color/image_raw/compressed", compressed_images(), 1500, "image"),
    "depth": (
        Image,
        "/camera/depth/image_raw",
        raw_images(("16UC1", "mono16", "32FC1", "rgb8")),
        1500,
        "depth",
    ),
    "camera_info": (CameraInfo, "/camera/color/camera_info", camera_infos(), 1000, "camera_info"),
    "pose": (PoseStamped, "/camera/pose", pose_stampeds(), 1000, "pose"),
    "odometry": (Odometry, "/odom", odometries(), 750, "pose"),
    "tf": (TFMessage, "/tf", tf_messages, 600, "tf"),
    "tf_static": (TFMessage, "/tf_static", tf_messages, 200, "tf_static"),
    "question": (String, f"{QA}/question", question_texts(), 1000, "question"),
}
REWARD_INPUTS = {
    "image": (Image, "/fuzz_cam/color/image_raw", raw_images(), 400, "image"),
    "depth": (
        Image,
        "/fuzz_cam/aligned_depth_to_color/image_raw",
        raw_images(("16UC1", "32FC1")),
        300,
        "depth",
    ),
    "camera_info": (CameraInfo, "/fuzz_cam/color/camera_info", camera_infos(), 200, "camera_info"),
    "pose": (PoseStamped, "/fuzz_cam/pose", pose_stampeds(), 300, "pose"),
}
ASKS, GOALS = 300, 200
SENT: Counter = Counter()


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    """Both node processes on one domain, and a client with a publisher per input."""
    domain_id = random_domain_id()
    logs = tmp_path_factory.mktemp("fuzz")
    qa = NodeProcess(
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
            "max_new_tokens:=1",
            "-p",
            "selector:=uniform",
            "-p",
            f"min_pixels:={28 * 28}",
            "-p",
            "input_width:=32",
            "-p",
            "input_height:=24",
            "-p",
            "diagnostics_period_s:=0.25",
            "-p",
            "qos.images.depth:=1000",
            "-p",
            "tf.timeout_s:=0.05",
            "-p",
            "cameras:=[camera,wrist,head]",
            "-p",
            "wrist.namespace:=/wrist",
            "-p",
            "wrist.image_transport:=compressed",
            "-p",
            "wrist.use_depth:=false",
            "-p",
            "wrist.pose_source:=odometry",
            "-p",
            "wrist.pose_topic:=/odom",
            "-p",
            "head.namespace:=/head",
            "-p",
            "head.use_depth:=false",
            "-p",
            "head.pose_source:=tf",
        ],
        domain_id,
        logs / "qa.log",
    )
    reward = NodeProcess(
        "spatial_mllm_ros.ros.reward_node",
        [
            "-r",
            "__ns:=/fuzz",
            "-p",
            "autostart:=true",
            "-p",
            f"model_path:={tiny_model_dir()}",
            "-p",
            "max_frames:=4",
            "-p",
            "max_new_tokens:=1",
            "-p",
            "frames_per_call:=1",
            "-p",
            f"min_pixels:={28 * 28}",
            "-p",
            "warmup:=false",
            "-p",
            "goal_queue_size:=2",
            "-p",
            "diagnostics_period_s:=0.25",
            "-p",
            "qos.images.depth:=1000",
            "-p",
            "qos.images.reliability:=reliable",
            "-p",
            "camera.namespace:=/fuzz_cam",
        ],
        domain_id,
        logs / "reward.log",
    )
    client = RosClient(domain_id)
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", DEEP)
    client.answers = client.collect(SpatialAnswer, f"{QA}/answer", DEEP)
    client.publishers = {}
    for group, inputs in (("qa", QA_INPUTS), ("reward", REWARD_INPUTS)):
        for name, (msg_type, topic, *_) in inputs.items():
            qos = STATIC if topic == "/tf_static" else DEEP
            client.publishers[(group, name)] = client.node.create_publisher(msg_type, topic, qos)
    client.action = ActionClient(client.node, ScoreTrajectory, f"{REWARD}/score_trajectory")
    wait_for_state(client, QA, "active", qa, timeout=180.0)
    wait_for_state(client, REWARD, "active", reward, timeout=180.0)
    wait_until(
        lambda: all(p.get_subscription_count() > 0 for p in client.publishers.values()),
        30.0,
        "every input subscribed",
    )
    client.processes = {"qa": qa, "reward": reward}
    yield client
    client.close()
    for process in (qa, reward):
        assert process.stop() == 0, process.output()[-3000:]


def _fuzz(ros, group: str, name: str, inputs: dict) -> None:
    """Publish ``count`` generated messages of one input, never more than ``MAX_LAG`` ahead of the node.

    The node's subscriptions keep 1000 messages; a publisher further ahead than that would overwrite
    messages in the node's history before its callbacks take them (DDS losses, not the node's).
    """
    _, _, strategy, count, kind = inputs[name]
    publisher = ros.publishers[(group, name)]
    node = QA if group == "qa" else REWARD
    counter = f"messages_{kind}"
    base = _count(status_values(ros.diagnostics, node), counter)
    answers_base = len(ros.answers)
    published = Counter()

    def caught_up() -> bool:
        taken = _count(status_values(ros.diagnostics, node), counter)
        if base + published["messages"] - taken > MAX_LAG:
            return False
        # every question is answered on ~/answer (history 1000): stay as close behind the answers too
        return name != "question" or answers_base + published["messages"] - len(ros.answers) <= MAX_LAG

    @settings(
        max_examples=count // BATCH,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
    def publish(batch):
        for msg in batch:
            publisher.publish(msg)
        published["messages"] += len(batch)
        SENT[(group, name)] += len(batch)
        if name in ("tf", "tf_static"):
            SENT[("qa", f"{name}_transforms")] += sum(len(m.transforms) for m in batch)
        wait_until(caught_up, 60.0, f"{node} to take {name} messages")

    publish()
    assert SENT[(group, name)] == count


@pytest.mark.parametrize("name", list(QA_INPUTS))
def test_qa_node_inputs(ros, name):
    _fuzz(ros, "qa", name, QA_INPUTS)
    assert ros.processes["qa"].alive()


@pytest.mark.parametrize("name", list(REWARD_INPUTS))
def test_reward_node_camera_inputs(ros, name):
    _fuzz(ros, "reward", name, REWARD_INPUTS)
    assert ros.processes["reward"].alive()


def test_qa_node_asks_and_table_rows(ros):
    @settings(
        max_examples=ASKS // 25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(ask_requests(), min_size=25, max_size=25))
    def ask(batch):
        futures = ros.call_many_async(AskSpatial, f"{QA}/ask", batch)
        wait_until(lambda: all(f.done() for f in futures), 60.0, "the ~/ask responses")
        SENT[("qa", "ask")] += len(batch)

    ask()
    rows = table_rows(start_stamp=1000.0)
    publish = {
        "image": ("qa", "image"),
        "compressed": ("qa", "compressed"),
        "pose": ("qa", "pose"),
        "camera_info": ("qa", "camera_info"),
        "question": ("qa", "question"),
    }
    for row, key in publish.items():
        for msg in rows[row]:
            ros.publishers[key].publish(msg)
            SENT[key] += 1
            time.sleep(0.01)
    futures = ros.call_many_async(AskSpatial, f"{QA}/ask", rows["ask"])
    wait_until(lambda: all(f.done() for f in futures), 60.0, "the table's ~/ask")
    assert "max_frames 256 is outside" in futures[0].result().answer.error
    SENT[("qa", "ask")] += len(rows["ask"])
    assert sum(SENT[("qa", name)] for name in QA_INPUTS) + SENT[("qa", "ask")] >= 10_000


def _values(ros, node: str, ready) -> dict[str, str]:
    """The node's newest counters once ``ready`` holds for them (or after 120 s: the asserts then say what
    is missing)."""
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline and not ready(status_values(ros.diagnostics, node)):
        time.sleep(0.1)
    return status_values(ros.diagnostics, node)


def _count(values: dict[str, str], key: str) -> int:
    return int(values.get(key, "0"))


def _sent_by_kind(group: str, inputs: dict) -> Counter:
    kinds: Counter = Counter()
    for name, (*_, kind) in inputs.items():
        kinds[kind] += SENT[(group, name)]
    return kinds


def _assert_accounted(values: dict[str, str], sent: Counter, kinds) -> None:
    for kind in kinds:
        received = _count(values, f"messages_{kind}")
        assert received == sent[kind], (kind, received, sent[kind])
        assert received == (
            _count(values, f"malformed_{kind}")
            + _count(values, f"received_{kind}")
            + _count(values, f"callback_error_{kind}")
        ), kind
    errors = {k: v for k, v in values.items() if k.startswith("callback_error") and v != "0"}
    assert errors == {}, {k: values.get(f"last_error_{k}") for k in errors}


def test_qa_node_accounts_for_every_message_and_still_answers(ros):
    sent = _sent_by_kind("qa", QA_INPUTS)
    questions = sent["question"] + SENT[("qa", "ask")]
    values = _values(
        ros,
        QA,
        lambda v: (
            all(_count(v, f"messages_{k}") >= sent[k] for k in sent)
            and _count(v, "questions_submitted") >= questions
        ),
    )
    _assert_accounted(values, sent, ("image", "depth", "camera_info", "pose"))
    for kind in ("tf", "tf_static"):
        assert _count(values, f"messages_{kind}") == sent[kind]
        refused = sum(
            int(v)
            for k, v in values.items()
            if k.startswith(f"malformed_{kind}_")
            and (kind == "tf_static" or not k.startswith("malformed_tf_static"))
        )
        assert _count(values, f"{kind}_transforms") + refused == SENT[("qa", f"{kind}_transforms")], kind
    # one answer per question and ask, every outcome counted
    wait_until(lambda: len(ros.answers) >= questions, 120.0,
               f"one answer per question ({questions} questions)")
    time.sleep(0.5)
    assert len(ros.answers) == questions
    values = _values(
        ros, QA, lambda v: v.get("questions_pending") == "0" and _count(v, "questions_answered") > 0
    )
    rejected = sum(int(v) for k, v in values.items() if k.startswith("questions_rejected_"))
    assert _count(values, "questions_submitted") == questions
    assert _count(values, "messages_question") == sent["question"]
    assert _count(values, "messages_ask") == SENT[("qa", "ask")]
    assert rejected + _count(values, "questions_answered") == questions
    assert values["questions_pending"] == "0"
    # the table: decompression bomb and 12000x12000 refused from the header, GIF refused, 1x1 and 1 MB
    # frame ids kept out of the buffer, absurd K and pose refused, no reset from one far-future pose
    assert _count(values, "malformed_image_too_many_pixels") >= 2
    assert _count(values, "dropped_image_invalid_frame_id") >= 3
    assert int(values["buffer_bytes"]) < 64 * 1024 * 1024
    # a normal question about normal frames gets a normal answer
    publisher = ros.publishers[("qa", "image")]
    for msg in good_frame_burst(5000.0, 20):
        publisher.publish(msg)
        time.sleep(0.02)
    request = AskSpatial.Request(
        question="How many chairs are in the room?",
        window_start=sec_to_stamp(5000.0),
        window_end=sec_to_stamp(5002.0),
    )
    answer = ros.call(AskSpatial, f"{QA}/ask", request, timeout=120.0).answer
    assert answer.error == "" and len(answer.frame_stamps) >= 2, answer.error
    assert ros.processes["qa"].alive()


def test_reward_node_survives_fuzzed_goals_and_still_scores(ros, tmp_path):
    assert ros.action.wait_for_server(timeout_sec=30.0)
    responses: Counter = Counter()

    @settings(
        max_examples=GOALS // 4,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(score_goals(), min_size=4, max_size=4))
    def send(batch):
        futures = [ros.action.send_goal_async(goal) for goal in batch]
        wait_until(lambda: all(f.done() for f in futures), 30.0, "goal responses")
        results = []
        for future in futures:
            handle = future.result()
            responses["accepted" if handle.accepted else "rejected"] += 1
            if handle.accepted:
                results.append(handle.get_result_async())
        wait_until(lambda: all(r.done() for r in results), 60.0, "goal results")
        SENT[("reward", "goals")] += len(batch)

    send()
    sent = _sent_by_kind("reward", REWARD_INPUTS)
    goals = SENT[("reward", "goals")]
    values = _values(
        ros,
        REWARD,
        lambda v: (
            all(_count(v, f"messages_{k}") >= sent[k] for k in sent)
            and _count(v, "goals_received") >= goals
            and v.get("goals_pending") == "0"
        ),
    )
    _assert_accounted(values, sent, ("image", "depth", "camera_info", "pose"))
    assert _count(values, "goals_received") == goals == responses["accepted"] + responses["rejected"]
    assert _count(values, "goals_accepted") == responses["accepted"]
    rejected = sum(int(v) for k, v in values.items() if k.startswith("goals_rejected_"))
    assert rejected == responses["rejected"]
    finished = sum(
        _count(values, f"goals_{outcome}")
        for outcome in ("invalid", "aborted", "succeeded", "canceled", "failed")
    )
    assert finished == responses["accepted"]
    # a normal goal on a recording is scored normally
    bag = write_push_bag(tmp_path / "bag", 4)
    future = ros.action.send_goal_async(
        ScoreTrajectory.Goal(instruction="push the box", mode="progress", bag_path=str(bag))
    )
    wait_until(future.done, 30.0, "the goal response")
    result = future.result().get_result_async()
    wait_until(result.done, 120.0, "the goal result")
    # (the tiny random model's texts are not numbers: per-frame notes in error, the goal still succeeds)
    assert result.result().status == GoalStatus.STATUS_SUCCEEDED, result.result().result.reward.error
    assert len(result.result().result.reward.progress) == 4
    assert ros.processes["reward"].alive()
