# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The offline evaluation and the ROS graph agree: same frames in, same selection and answers out.

A synthetic scene bag is replayed by ``bag_player`` (a real process) into ``spatial_mllm_node``
(another real process, tiny checkpoint) over real DDS on a random domain, localhost only. After the
replay every question of the scene is asked through ``~/ask``; the SpatialAnswers must carry the
same selected frame stamps and the same raw model text as ``evaluate_bag`` over the same bag with
the same buffer, selector and model — and so score the same.
"""

from __future__ import annotations

import json

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import (
    REPO_ROOT,
    NodeProcess,
    RosClient,
    random_domain_id,
    tiny_model_dir,
    wait_for_state,
    wait_until,
)
from spatial_mllm_ros.srv import AskSpatial

from spatial_mllm_ros.bag.evaluate import evaluate_bag, load_questions, summarize
from spatial_mllm_ros.bag.scene import write_scene
from spatial_mllm_ros.core.metrics import score_question
from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.ros.conversions import stamp_to_sec

NODE = "/spatial_mllm_node"
NUM_FRAMES = 20
MAX_FRAMES = 4
MAX_NEW_TOKENS = 6
BUFFER_FRAMES = 100  # both sides hold the whole bag
BUFFER_MEGABYTES = 256.0


# The node's parameters for each recording layout: a PoseStamped topic under /camera, or a RealSense
# robot's topics with the camera pose only through the replayed /tf and /tf_static (the node's tf path).
NODE_LAYOUT = {
    "pose_topic": [],
    "tf": ["-p", "camera.namespace:=/camera/camera",
           "-p", "camera.depth_topic:=/camera/camera/aligned_depth_to_color/image_raw",
           "-p", "camera.pose_source:=tf", "-p", "tf.target_frame:=map"],
}


@pytest.fixture(scope="module", params=sorted(NODE_LAYOUT))
def layout(request):
    return request.param


@pytest.fixture(scope="module")
def scene(layout, tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene") / "room", seed=1, width=160, height=120,
                       num_frames=NUM_FRAMES, pose_source=layout)


@pytest.fixture(scope="module")
def questions_file(scene):
    """One question of every type the scene has (all ten VSI-Bench types), to keep the test short."""
    rows, seen = [], set()
    for row in json.loads(scene.questions.read_text()):
        if row["question_type"] not in seen:
            seen.add(row["question_type"])
            rows.append(row)
    path = scene.root / "one_per_type.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture(scope="module")
def offline(scene, questions_file, model_dir, tmp_path_factory):
    torch.set_num_threads(1)
    qa = SpatialQA(model_dir, max_frames=MAX_FRAMES, max_new_tokens=MAX_NEW_TOKENS, selector="space_aware")
    try:
        return evaluate_bag(scene.bag, questions_file, qa, tmp_path_factory.mktemp("offline"),
                            max_frames=MAX_FRAMES, progress=False, report=False,
                            buffer_max_frames=BUFFER_FRAMES, buffer_max_megabytes=BUFFER_MEGABYTES,
                            window="sliding")
    finally:
        qa.close()


def _diagnostics(client) -> dict[str, str]:
    return {kv.key: kv.value for kv in client.diagnostics[-1].status[0].values} if client.diagnostics else {}


@pytest.fixture(scope="module")
def replayed(scene, layout, questions_file, model_dir, tmp_path_factory):
    """Start the node, replay the bag into it, ask every question through ~/ask; the answers by id."""
    domain_id = random_domain_id()
    logs = tmp_path_factory.mktemp("replay_logs")
    node = NodeProcess(
        "spatial_mllm_ros.ros.qa_node",
        ["--params-file", str(REPO_ROOT / "config" / "cpu.yaml"), "-p", "autostart:=true",
         "-p", f"model_path:={model_dir}", "-p", f"max_frames:={MAX_FRAMES}",
         "-p", f"max_new_tokens:={MAX_NEW_TOKENS}", "-p", "selector:=space_aware",
         "-p", f"buffer.max_frames:={BUFFER_FRAMES}", "-p", f"buffer.max_megabytes:={BUFFER_MEGABYTES}",
         "-p", "qos.images.reliability:=reliable", "-p", "qos.images.depth:=100",
         "-p", "diagnostics_period_s:=0.2", "-p", "warmup:=false", *NODE_LAYOUT[layout]],
        domain_id, logs / "node.log")
    client = RosClient(domain_id)
    player = None
    try:
        client.diagnostics = client.collect(DiagnosticArray, "/diagnostics")
        wait_for_state(client, NODE, "active", node, timeout=180.0)
        # the whole bag plays in ~0.5 s: the delay lets discovery finish even on a loaded machine
        player = NodeProcess("spatial_mllm_ros.ros.bag_player",
                             ["-p", f"bag:={scene.bag}", "-p", "rate:=4.0", "-p", "start_delay_s:=1.0",
                              "-p", "wait_for_subscribers_s:=30.0"],
                             domain_id, logs / "player.log")
        player.process.wait(timeout=120)
        assert player.stop() == 0, player.output()
        wait_until(lambda: int(_diagnostics(client).get("buffer_frames", "0")) >= NUM_FRAMES, 20.0,
                   f"{NUM_FRAMES} frames in the node's buffer")
        diagnostics = _diagnostics(client)
        answers = {}
        for question in load_questions(questions_file):
            request = AskSpatial.Request(question=question.question, options=question.options or [],
                                         task_type=question.question_type, max_frames=MAX_FRAMES,
                                         query_id=question.id)
            answers[question.id] = client.call(AskSpatial, f"{NODE}/ask", request, timeout=120.0).answer
        yield answers, diagnostics
    finally:
        client.close()
        if player is not None and player.alive():
            player.stop()
        node.stop()


def test_node_buffered_every_replayed_frame(replayed):
    _, diagnostics = replayed
    assert int(diagnostics["buffer_frames"]) == NUM_FRAMES
    assert int(diagnostics["received_image"]) == NUM_FRAMES
    dropped = {k: v for k, v in diagnostics.items() if k.startswith("dropped_") and int(v)}
    assert dropped == {}


def test_replayed_answers_equal_the_offline_evaluation(offline, replayed):
    answers, _ = replayed
    assert offline.frames_read == NUM_FRAMES
    # every frame had depth, K and a pose (from /tf in the robot layout): metric coverage, no fallback
    assert {row["selection_method"] for row in offline.rows} == {"space_aware"}
    assert set(answers) == {row["id"] for row in offline.rows}
    assert len({row["question_type"] for row in offline.rows}) == 10
    for row in offline.rows:
        answer = answers[row["id"]]
        assert answer.error == "" and row["error"] == "", (answer.error, row["error"])
        assert answer.query_id == row["id"]
        stamps = [stamp_to_sec(s) for s in answer.frame_stamps]
        assert len(stamps) == MAX_FRAMES
        assert stamps == pytest.approx(row["frame_stamps"], abs=1e-6), row["id"]
        assert answer.raw_text == row["raw_text"], row["id"]


def test_replayed_answers_score_like_the_offline_evaluation(questions_file, offline, replayed):
    answers, _ = replayed
    questions = {q.id: q for q in load_questions(questions_file)}
    rows = []
    for row in offline.rows:
        question = questions[row["id"]]
        score = score_question(question.question_type, answers[row["id"]].raw_text, question.ground_truth,
                               question.options, strict_vsibench=True)
        assert score == pytest.approx(row["score"])
        rows.append({"question_type": question.question_type, "score": score})
    summary, _ = summarize(rows)
    assert summary == pytest.approx(offline.summary)
    assert json.loads(offline.results_json.read_text())["summary"] == pytest.approx(summary)
