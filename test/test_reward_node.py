# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""ScoreTrajectory action with real processes over DDS: goal, feedback, result, cancel, bad goals.

The node runs in its own process with a tiny random checkpoint; this test process is the action
client. Every module uses its own random ROS_DOMAIN_ID (and localhost-only discovery) so parallel
test runs on one machine do not see each other.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import pytest
import rclpy
import torch
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import random_domain_id
from sensor_msgs.msg import Image
from spatial_mllm_ros.action import ScoreTrajectory
from spatial_mllm_ros.msg import TrajectoryReward
from spatial_mllm_ros.srv import AskSpatial

from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.synthetic import push_trajectory, write_push_bag
from spatial_mllm_ros.ros.conversions import rgb_to_image, sec_to_stamp

torch.set_num_threads(1)
DOMAIN_ID = random_domain_id()
NAMESPACE = "/reward_test"
ACTION = f"{NAMESPACE}/reward_annotator_node/score_trajectory"
COMPOSED = "/composed_test"


def _env():
    return dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Client:
    """An rclpy node on its own context and spin thread, with helpers for goals."""

    def __init__(self, name):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def action_client(self, name):
        return ActionClient(self.node, ScoreTrajectory, name)

    def send(self, client, goal, on_feedback=None, timeout=120.0):
        """(goal handle, result future) of an accepted goal."""
        future = client.send_goal_async(goal, feedback_callback=on_feedback)
        _wait(future.done, 30.0, "goal acceptance")
        handle = future.result()
        assert handle.accepted
        return handle, handle.get_result_async()

    def run(self, client, goal, on_feedback=None, timeout=120.0):
        """Send a goal and wait for its (status, result)."""
        _, result = self.send(client, goal, on_feedback)
        _wait(result.done, timeout, "the goal's result")
        return result.result().status, result.result().result

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)


def _publish_frames(publisher, frames):
    """Publish frames to a best-effort (sensor QoS) subscription, each three times in a row.

    The buffer drops repeated stamps, so one lost message does not change the trajectory.
    """
    for frame in frames:
        message = rgb_to_image(frame.rgb, stamp=frame.stamp, frame_id="cam")
        for _ in range(3):
            publisher.publish(message)
            time.sleep(0.02)
    time.sleep(0.5)


def _start(module, checkpoint, log_path, namespace=NAMESPACE, params=()):
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}",
            "-p", f"model_path:={checkpoint}", "-p", "max_frames:=4", "-p", "max_new_tokens:=4",
            *[item for p in params for item in ("-p", p)]]
    log = open(log_path, "w")  # noqa: SIM115 - closed by the fixture after the process ends
    return subprocess.Popen(args, env=_env(), stdout=log, stderr=subprocess.STDOUT), log


def _stop(process, log):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny")


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {"short": write_push_bag(root / "short", 4), "long": write_push_bag(root / "long", 40)}


@pytest.fixture(scope="module")
def processes(checkpoint, tmp_path_factory):
    """The standalone node and the composed process, started together (their start-ups overlap)."""
    logs = tmp_path_factory.mktemp("logs")
    started = {
        "node": (*_start("spatial_mllm_ros.ros.reward_node", checkpoint, logs / "reward_node.log",
                         params=["frames_per_call:=1", "autostart:=true",
                                 # the live-buffer test needs every frame: reliable, deep history
                                 "qos.images.reliability:=reliable", "qos.images.depth:=50"]),
                 logs / "reward_node.log"),
        "composed": (*_start("spatial_mllm_ros.ros.composed", checkpoint, logs / "composed.log",
                             namespace=COMPOSED, params=["autostart:=true", "selector:=uniform"]),
                     logs / "composed.log"),
    }
    try:
        yield {name: log_path for name, (_, _, log_path) in started.items()}
    finally:
        for process, log, _ in started.values():
            _stop(process, log)


@pytest.fixture(scope="module")
def server(processes):
    client = Client("reward_test_client")
    action = client.action_client(ACTION)
    try:
        if not action.wait_for_server(timeout_sec=90.0):
            raise AssertionError(f"action server did not come up:\n{processes['node'].read_text()}")
        yield client, action
    finally:
        client.close()


def test_goal_from_a_bag_gives_feedback_result_and_a_published_reward(server, bags):
    client, action = server
    published = []
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    client.node.create_subscription(TrajectoryReward, f"{NAMESPACE}/reward_annotator_node/trajectory_reward",
                                    published.append, reliable)
    feedback = []
    goal = ScoreTrajectory.Goal(instruction="push the red box", mode="progress", bag_path=str(bags["short"]),
                                topic="/camera/color/image_raw", stride=1)
    status, result = client.run(action, goal, lambda msg: feedback.append(
        (msg.feedback.frames_done, msg.feedback.frames_total)))
    assert status == GoalStatus.STATUS_SUCCEEDED
    reward = result.reward
    assert reward.episode_id == "short" and reward.instruction == "push the red box"
    assert reward.method.startswith("progress/tiny")
    assert len(reward.stamps) == len(reward.progress) == len(reward.reward) == 4
    expected_stamps = [f.stamp for f in push_trajectory(4).frames]
    assert [s.sec + s.nanosec * 1e-9 for s in reward.stamps] == pytest.approx(expected_stamps)
    assert reward.progress[0] == 0.0
    valid = [p for p in reward.progress if not math.isnan(p)]
    assert all(0.0 <= p <= 1.0 for p in valid) and reward.episode_score == pytest.approx(valid[-1])
    # frames_per_call=1: one feedback per scored frame after the reference frame
    _wait(lambda: len(feedback) >= 4, 5.0, "all feedback")
    assert feedback == [(1, 4), (2, 4), (3, 4), (4, 4)]
    _wait(lambda: published, 5.0, "the published TrajectoryReward")
    assert list(published[0].progress) == pytest.approx(list(reward.progress), nan_ok=True)


def test_cancel_stops_a_long_goal(server, bags):
    client, action = server
    feedback = []
    goal = ScoreTrajectory.Goal(instruction="push the red box", mode="progress", bag_path=str(bags["long"]))
    handle, result = client.send(action, goal, lambda msg: feedback.append(msg.feedback.frames_done))
    _wait(lambda: len(feedback) >= 2, 60.0, "the first scored frames")
    cancel = handle.cancel_goal_async()
    _wait(cancel.done, 10.0, "the cancel response")
    assert len(cancel.result().goals_canceling) == 1
    _wait(result.done, 30.0, "the cancelled goal's result")
    assert result.result().status == GoalStatus.STATUS_CANCELED
    reward = result.result().result.reward
    assert "cancelled after scoring" in reward.error
    # all 40 scored frames are reported; the ones never asked about are NaN
    assert len(reward.progress) == 40 and math.isnan(reward.progress[-1])
    assert 2 <= max(feedback) < 40


def test_missing_bag_and_bad_goals_abort_with_clear_errors(server, bags):
    client, action = server
    status, result = client.run(action, ScoreTrajectory.Goal(instruction="push", mode="progress",
                                                             bag_path="/no/such/bag"))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.reward.error == "bag not found: /no/such/bag (no such file or directory)"
    assert math.isnan(result.reward.episode_score) and len(result.reward.progress) == 0
    status, result = client.run(action, ScoreTrajectory.Goal(instruction="push", mode="speed",
                                                             bag_path=str(bags["short"])))
    assert status == GoalStatus.STATUS_ABORTED and "mode must be one of" in result.reward.error
    status, result = client.run(action, ScoreTrajectory.Goal(instruction="push", mode="progress",
                                                             bag_path=str(bags["short"]), topic="/nothing"))
    assert status == GoalStatus.STATUS_ABORTED and "image topic '/nothing' is not in" in result.reward.error
    # the node still serves after the bad goals
    status, _ = client.run(action, ScoreTrajectory.Goal(instruction="push", mode="displacement",
                                                        target_displacement=0.3, bag_path=str(bags["short"])))
    assert status == GoalStatus.STATUS_SUCCEEDED


def test_goal_from_the_live_buffer_window(server):
    client, action = server
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    publisher = client.node.create_publisher(Image, "/camera/color/image_raw", reliable)
    _wait(lambda: publisher.get_subscription_count() > 0, 20.0, "the node's camera subscription")
    time.sleep(1.0)  # the node's side of the match settles a moment after ours
    _publish_frames(publisher, push_trajectory(6, start_stamp=500.0).frames)
    goal = ScoreTrajectory.Goal(instruction="push the red box", mode="progress", stride=2,
                                window_start=sec_to_stamp(500.0), window_end=sec_to_stamp(500.85),
                                episode_id="live_episode")
    status, result = client.run(action, goal)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.reward.error
    stamps = [s.sec + s.nanosec * 1e-9 for s in result.reward.stamps]
    # frames at 500.0 .. 500.8 (5 Hz) inside the window: 5 frames, stride 2 -> 0, 2, 4
    assert stamps == pytest.approx([500.0, 500.4, 500.8])
    assert result.reward.episode_id == "live_episode"
    status, result = client.run(action, ScoreTrajectory.Goal(
        instruction="push", mode="progress", window_start=sec_to_stamp(900.0),
        window_end=sec_to_stamp(901.0)))
    assert status == GoalStatus.STATUS_ABORTED and "no frames in the live buffer" in result.reward.error


def test_composed_process_serves_questions_and_rewards_from_one_model(processes, bags):
    namespace = COMPOSED
    client = Client("composed_test_client")
    try:
        action = client.action_client(f"{namespace}/reward_annotator_node/score_trajectory")
        assert action.wait_for_server(timeout_sec=90.0), processes["composed"].read_text()
        ask = client.node.create_client(AskSpatial, f"{namespace}/spatial_mllm_node/ask")
        assert ask.wait_for_service(timeout_sec=30.0)
        publisher = client.node.create_publisher(Image, f"{namespace}/camera/color/image_raw", 10)
        _wait(lambda: publisher.get_subscription_count() > 0, 60.0, "the QA node's camera subscription")
        _publish_frames(publisher, push_trajectory(4, start_stamp=700.0).frames)
        # a reward goal on the QA node's live buffer ...
        status, result = client.run(action, ScoreTrajectory.Goal(instruction="push the box", mode="progress"))
        assert status == GoalStatus.STATUS_SUCCEEDED, result.reward.error
        assert len(result.reward.progress) == 4
        # ... and a question, answered by the same engine (same model id)
        future = ask.call_async(AskSpatial.Request(question="How many boxes are there?"))
        _wait(future.done, 60.0, "the answer")
        answer = future.result().answer
        assert answer.error == "" and answer.model_id
        assert result.reward.method == f"progress/{answer.model_id}"
        status, result = client.run(action, ScoreTrajectory.Goal(instruction="push", mode="progress",
                                                                 bag_path=str(bags["short"])))
        assert status == GoalStatus.STATUS_SUCCEEDED
    finally:
        client.close()
    assert "with model (shared)" in processes["composed"].read_text()


def test_composed_nodes_share_one_engine_in_process(checkpoint):
    from spatial_mllm_ros.ros.composed import ComposedNodes

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        composed = ComposedNodes(context=context, namespace="/in_process",
                                 parameter_overrides=[Parameter("model_path", value=str(checkpoint)),
                                                      Parameter("max_frames", value=4),
                                                      Parameter("max_pixels", value=28 * 28 * 4),
                                                      Parameter("min_pixels", value=28 * 28)])
        qa_node, reward_node = composed.make_qa_node(), composed.make_reward_node()
        assert composed.engine.built is None  # nothing is loaded before configure
        assert reward_node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        engine = composed.engine.built
        assert engine is not None and reward_node.engine is engine
        assert qa_node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert composed.engine.get() is engine  # built once, by the same factory, with every engine setting
        assert engine.max_pixels == 28 * 28 * 4
        assert reward_node._annotator(engine).qa.max_frames == 4
        assert composed.live_frames(None, None) == []  # no camera frames yet
        frames = push_trajectory(3).frames
        texts = engine.generate_text(frames, ["How far did the box move?"])
        assert len(texts) == 1 and isinstance(texts[0], str)
        reward_node.close()
        qa_node.close()
        assert engine.model_loaded  # the nodes do not close the shared engine
        composed.close()
        assert engine.model is None  # closed once, by the owner
        reward_node.destroy_node()
        qa_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
