# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Helpers for the ROS integration tests: node subprocesses and a client node over real DDS.

Each test module gets its own random ROS_DOMAIN_ID (tests of other modules or other checkouts running
at the same time on this machine never see each other) and localhost-only discovery.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_INACTIVE_SHUTDOWN,
}


# Domain ids whose DDS ports stay out of Linux's ephemeral port range (ROS 2 docs): 1..101, 215..232.
# 0 is the default every other ROS program uses.
SAFE_DOMAIN_IDS = (*range(1, 102), *range(215, 233))


# One random shuffle per test process: successive modules never share a domain (a node a previous
# module failed to stop cannot answer for another), and concurrent test runs rarely do.
_DOMAIN_ORDER = random.SystemRandom().sample(SAFE_DOMAIN_IDS, len(SAFE_DOMAIN_IDS))
_next_domain = itertools.count()


def random_domain_id() -> int:
    """A safe domain id not handed out before in this process (random across processes)."""
    return _DOMAIN_ORDER[next(_next_domain) % len(_DOMAIN_ORDER)]


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for node subprocesses: this domain, localhost only, logs in the build tree."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(REPO_ROOT / "build" / "ros_logs"), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    env.pop("RMW_IMPLEMENTATION", None)
    return env


class NodeProcess:
    """A node started as ``python -m MODULE --ros-args ...`` (or as the venv's console script
    ``console_script``, as ``ros2 run`` would); output kept in a log file.
    """

    def __init__(self, module: str, ros_args: list[str], domain_id: int, log_path: Path,
                 console_script: str | None = None, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [PYTHON, "-m", module]
        if console_script is not None:
            command = [str(Path(PYTHON).parent / console_script)]
            assert Path(command[0]).is_file(), f"console script {command[0]} is not installed (make setup)"
        self.process = subprocess.Popen([*command, "--ros-args", *ros_args], cwd=REPO_ROOT,
                                        env={**ros_env(domain_id), **(env or {})}, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._log.close()
        return self.process.returncode


class RosClient:
    """A client node in the test process, spun by a background thread, in its own context/domain."""

    def __init__(self, domain_id: int, name: str = "test_client") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the context is shut down at teardown
            self.executor.spin()

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        """Call a service (waiting for it first) and return the response; AssertionError on timeout."""
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert future.done(), f"no response from {name} within {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def call_many_async(self, srv_type, name: str, requests: list, timeout: float = 30.0) -> list:
        """Send several requests at once (no waiting in between); futures in request order.

        The client's history holds all of them (the default depth of 10 would drop responses of a burst).
        """
        qos = QoSProfile(depth=max(10, len(requests)), reliability=ReliabilityPolicy.RELIABLE)
        client = self.node.create_client(srv_type, name, qos_profile=qos)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        return [client.call_async(r) for r in requests]

    def collect(self, msg_type, topic: str, qos: QoSProfile | int = 10) -> list:
        """Subscribe and return the list the received messages are appended to."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def publisher(self, msg_type, topic: str, reliable: bool = True, depth: int = 10):
        """A publisher on ``topic`` (reliable by default)."""
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    def lifecycle_state(self, node: str) -> str:
        """Label of the node's current lifecycle state, via ``<node>/get_state``."""
        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

    def change_state(self, node: str, transition: str) -> bool:
        """Trigger a transition via ``<node>/change_state``; True when it succeeded."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition]
        return bool(self.call(ChangeState, f"{node}/change_state", request, timeout=120.0).success)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_state(client: RosClient, node: str, label: str, process: NodeProcess,
                   timeout: float = 120.0) -> None:
    """Wait until the node process reports the lifecycle state ``label`` (fails fast if it died)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        assert process.alive(), f"node process exited:\n{process.output()[-3000:]}"
        try:
            state = client.lifecycle_state(node)
        except AssertionError:
            state = "(no answer)"
        if state == label:
            return
        time.sleep(0.2)
    raise AssertionError(f"node never reached {label!r} (last {state!r}):\n{process.output()[-3000:]}")


def tiny_model_dir() -> Path:
    """The tiny random checkpoint (seed 0), made once into build/ and reused (written atomically)."""
    target = REPO_ROOT / "build" / "test_models" / "ros_tiny_seed0"
    if (target / "config.json").is_file():
        return target
    import tempfile

    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".ros_tiny_"))
    make_tiny_checkpoint(staging, preset="tiny", seed=0)
    try:
        os.replace(staging, target)
    except OSError:  # made at the same time by another test process: use theirs
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


def latest_status(diagnostic_arrays: list, node: str):
    """The newest DiagnosticStatus published by ``node`` (e.g. "/spatial_mllm_node"), or None."""
    for array in reversed(diagnostic_arrays):
        for status in array.status:
            if status.name.startswith(f"{node}:"):
                return status
    return None


def status_values(diagnostic_arrays: list, node: str) -> dict[str, str]:
    """Key/values of :func:`latest_status` ({} when the node has published none yet)."""
    status = latest_status(diagnostic_arrays, node)
    return {kv.key: kv.value for kv in status.values} if status is not None else {}
