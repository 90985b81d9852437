# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The reward node's lifecycle and its bounded goal queue, over real DDS against a node process.

Unconfigured: no action server. Configured but inactive: goals are rejected at goal time. Active with
``goal_queue_size:=1``: while one goal is being scored, every further goal is rejected at once (so no
executor thread waits on the model), counted in ``/diagnostics`` with the reason.
"""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from ros_harness import (
    NodeProcess,
    RosClient,
    random_domain_id,
    status_values,
    tiny_model_dir,
    wait_for_state,
    wait_until,
)
from spatial_mllm_ros.action import ScoreTrajectory

from spatial_mllm_ros.reward.synthetic import write_push_bag

NODE = "/reward_annotator_node"
ACTION = f"{NODE}/score_trajectory"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    domain_id = random_domain_id()
    bag = write_push_bag(tmp_path_factory.mktemp("bags") / "long", 40)
    process = NodeProcess(
        "spatial_mllm_ros.ros.reward_node",
        [
            "-p",
            f"model_path:={tiny_model_dir()}",
            "-p",
            "max_frames:=4",
            "-p",
            "max_new_tokens:=4",
            "-p",
            "frames_per_call:=1",
            "-p",
            "goal_queue_size:=1",
            "-p",
            "diagnostics_period_s:=0.2",
            "-p",
            "warmup:=false",
        ],
        domain_id,
        tmp_path_factory.mktemp("reward") / "node.log",
    )
    client = RosClient(domain_id)
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics")
    client.action = ActionClient(client.node, ScoreTrajectory, ACTION)
    yield client, process, bag
    client.close()
    process.stop()


def _send(client, goal):
    future = client.action.send_goal_async(goal)
    wait_until(future.done, 30.0, "the goal response")
    return future.result()


def _values(client, key, expected):
    wait_until(
        lambda: int(status_values(client.diagnostics, NODE).get(key, "0")) >= expected,
        20.0,
        f"diagnostics {key} >= {expected}",
    )
    return status_values(client.diagnostics, NODE)


def test_lifecycle_and_bounded_goals(setup):
    client, process, bag = setup
    wait_for_state(client, NODE, "unconfigured", process)
    assert not client.action.wait_for_server(timeout_sec=1.0)  # nothing served before configure
    assert client.change_state(NODE, "configure")
    assert client.action.wait_for_server(timeout_sec=30.0)
    goal = ScoreTrajectory.Goal(instruction="push the box", mode="progress", bag_path=str(bag))
    assert not _send(client, goal).accepted  # inactive: rejected at goal time
    assert int(_values(client, "goals_rejected_inactive", 1)["goals_rejected_inactive"]) == 1
    assert client.change_state(NODE, "activate")
    running = _send(client, goal)
    assert running.accepted
    started = time.monotonic()
    refused = [_send(client, goal) for _ in range(3)]
    assert not any(handle.accepted for handle in refused)
    assert time.monotonic() - started < 10.0  # refused at once, not after the running goal
    values = _values(client, "goals_rejected_busy", 3)
    assert int(values["goals_rejected_busy"]) == 3 and values["goals_pending"] == "1"
    assert "goal_queue_size=1" in values["last_error_goals_rejected"]
    cancel = running.cancel_goal_async()
    wait_until(cancel.done, 30.0, "the cancel response")
    result = running.get_result_async()
    wait_until(result.done, 120.0, "the cancelled goal's end")
    values = _values(client, "goals_canceled", 1)
    assert values["goals_pending"] == "0"
    # a bad goal is aborted at once with the reason, and the node keeps serving
    bad = _send(client, ScoreTrajectory.Goal(instruction="x" * 5000, mode="progress"))
    assert bad.accepted
    result = bad.get_result_async()
    wait_until(result.done, 30.0, "the bad goal's result")
    assert "instruction has 5000 characters" in result.result().result.reward.error
    assert client.change_state(NODE, "deactivate") and client.change_state(NODE, "cleanup")
    assert client.lifecycle_state(NODE) == "unconfigured" and process.alive()
