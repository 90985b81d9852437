# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``reward_annotator_node``: the ScoreTrajectory action, per-frame progress and rewards online.

A policy-learning pipeline (or an operator) sends a ``ScoreTrajectory`` goal naming an instruction, a
mode and where the trajectory is: the node's live frame buffer (``bag_path`` empty, optionally a time
window) or a rosbag2 recording (``bag_path`` + image ``topic`` + window). The node scores it with
:class:`~spatial_mllm_ros.reward.annotator.RewardAnnotator`, publishing feedback after every model call,
and answers with a ``TrajectoryReward``, also published on ``~/trajectory_reward`` for goals that
complete.

A lifecycle node: configure loads (or, composed, shares) the model and creates the action server;
activate subscribes to the camera (:mod:`~spatial_mllm_ros.ros.camera_ingest`, standalone only) and
starts taking goals. Goals are scored one at a time (one model); at most ``goal_queue_size`` goals are
accepted and unfinished, so a waiting goal can never starve the executor: more are rejected at goal
time (counted as ``goals_rejected_busy`` with the reason in the log and diagnostics), and so are goals
while the node is not active. A bad goal (unknown mode, empty instruction, missing bag, no frames) is
aborted at once with the reason in ``result.reward.error``; cancel works between model calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy

from spatial_mllm_ros.action import ScoreTrajectory
from spatial_mllm_ros.engine import parameters as table
from spatial_mllm_ros.msg import TrajectoryReward
from spatial_mllm_ros.reward.annotator import RewardAnnotator, TrajectoryScores
from spatial_mllm_ros.reward.episodes import AUTO, LabelOptions, score_recording
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros import diagnostics as diag
from spatial_mllm_ros.ros.boundary import Boundary, Counters, clip
from spatial_mllm_ros.ros.camera_ingest import CameraIngest, camera_specs, ingest_specs
from spatial_mllm_ros.ros.engine_params import build_engine, engine_specs, from_table, prepare_engine
from spatial_mllm_ros.ros.parameters import ParameterTable, Spec, value
from spatial_mllm_ros.ros.reward_goals import goal_problem, goal_window
from spatial_mllm_ros.ros.runtime import run

NODE_NAME = "reward_annotator_node"
ACTION_NAME = "~/score_trajectory"
REWARD_TOPIC = "~/trajectory_reward"
CAMERA = "camera"
DEFAULT_MAX_IMAGE_PIXELS = 1920 * 1200

# frame_source(start, end) -> time-ordered frames of a live buffer (None = unbounded).
FrameSource = Callable[[float | None, float | None], list]


class _GoalCancelFlag:
    """``threading.Event``-like view of an action goal's cancel request (what the annotator polls)."""

    def __init__(self, goal_handle: Any):
        self._goal_handle = goal_handle

    def is_set(self) -> bool:
        return bool(self._goal_handle.is_cancel_requested)


def scores_to_msg(scores: TrajectoryScores | None, msg: TrajectoryReward) -> TrajectoryReward:
    """Fill the per-frame arrays of a TrajectoryReward from scores (float32, NaN kept)."""
    if scores is None:
        msg.episode_score = float("nan")
        return msg
    msg.method = scores.method
    msg.stamps = [conv.sec_to_stamp(float(s)) for s in scores.stamps]
    msg.progress = scores.progress.astype(np.float32).tolist()
    msg.reward = scores.reward.astype(np.float32).tolist()
    msg.episode_score = float(scores.episode_score)
    return msg


def node_specs() -> list[Spec]:
    """Parameters of the reward node beyond the engine's and the ingest's."""
    return [
        Spec("autostart", False, "Configure and activate by itself at start."),
        Spec(
            "goal_queue_size",
            2,
            "Goals accepted and not finished (the running one included); more are rejected at goal time.",
            value_range=(1, 16),
        ),
        Spec(
            "frames_per_call",
            0,
            "Frame pairs (frame 0, frame k) per model call; 0 = max_frames - 1.",
            read_only=False,
            value_range=(0, 255),
        ),
        Spec(
            "subject",
            "the object the robot is manipulating",
            "What moves, in displacement-mode prompts.",
            read_only=False,
        ),
        Spec(
            "subscribe_camera", True, "Keep an own frame buffer from the camera.* topics (standalone node)."
        ),
        Spec("image_topic", "", "Colour topic inside bags (empty: discovered from the recording)."),
        Spec("bag_root", "", "When set, bag_path of a goal must lie inside this directory."),
        Spec("diagnostics_period_s", 1.0, "Period of the /diagnostics status.", value_range=(0.05, 60.0)),
        *from_table(table.BUFFER_PARAMETERS),
    ]


class RewardAnnotatorNode(LifecycleNode):
    """Serves ``~/score_trajectory`` and publishes ``~/trajectory_reward`` (see the module docstring).

    Args:
        node_name: ROS node name.
        engine_provider: returns the engine shared with other nodes of the process (composition; not
            closed here); None = the node builds its own from its parameters at configure.
        frame_source: where live-buffer goals take frames from (composition: the QA node's buffer);
            None = the node subscribes to its camera and keeps its own buffer.
        **kwargs: passed to ``rclpy.lifecycle.Node``.
    """

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        engine_provider: Callable[[], Any] | None = None,
        frame_source: FrameSource | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        self.counters = Counters()
        self.boundary = Boundary(self.counters, self.get_logger())
        self.parameter_table = ParameterTable()
        self.add_on_set_parameters_callback(self.parameter_table.validate)
        self.parameter_table.declare(
            self, [*engine_specs(), *node_specs(), *ingest_specs(DEFAULT_MAX_IMAGE_PIXELS)]
        )
        self.parameter_table.declare(self, camera_specs(CAMERA, namespace="/camera"), prefix=CAMERA)
        self._engine_provider = engine_provider
        self._shared_frames = frame_source
        self._engine: Any | None = None
        self._ingest: CameraIngest | None = None
        self._frame_source: FrameSource | None = None
        self._action_server: ActionServer | None = None
        self._reward_pub = None
        self._diagnostics: diag.Diagnostics | None = None
        self._state_label = "unconfigured"
        self._score_lock = threading.Lock()
        self._goals_lock = threading.Lock()
        self._goals_pending = 0
        self.executor_threads = int(value(self, "goal_queue_size")) + 1

    @property
    def lifecycle_state(self) -> str:
        """One of "unconfigured", "inactive", "active" or "finalized"."""
        return self._state_label

    @property
    def engine(self) -> Any | None:
        """The engine between configure and cleanup."""
        return self._engine

    def resolve_action_name(self) -> str:
        """Fully qualified name of the action (``<node>/score_trajectory``)."""
        return f"{self.get_fully_qualified_name()}/score_trajectory"

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Configure and activate by itself when ``autostart`` is set (called by :func:`run`)."""
        if value(self, "autostart") and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load or share the model, build the live buffer, create the action server and publishers."""
        started = time.perf_counter()
        try:
            if self._engine_provider is not None:
                self._engine = self._engine_provider()
                prepared = "shared engine"
            else:
                self._engine = build_engine(self) if value(self, "model_path") else None
                prepared = prepare_engine(self, self._engine) if self._engine is not None else "nothing"
            self._frame_source = self._shared_frames
            if self._frame_source is None and value(self, "subscribe_camera"):
                buffer = table.build_frame_buffer(
                    {s.name: value(self, s.name) for s in table.BUFFER_PARAMETERS}
                )
                self._ingest = CameraIngest(self, buffer, self.counters, self.boundary, [CAMERA])
                ingest = self._ingest
                self._frame_source = lambda start, end: ingest.frames(start=start, end=end, camera=CAMERA)
        except Exception as error:  # a bad model path must not kill the node
            self.get_logger().error(f"configure failed: {type(error).__name__}: {error}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self._reward_pub = self.create_publisher(
            TrajectoryReward, REWARD_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._action_server = ActionServer(
            self,
            ScoreTrajectory,
            ACTION_NAME,
            self.boundary.guard("execute", self._execute, self._execute_fallback),
            goal_callback=self.boundary.guard("goal", self._on_goal, lambda goal: GoalResponse.REJECT),
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self._diagnostics = diag.Diagnostics(
            self,
            self.boundary,
            "reward annotator",
            value(self, "diagnostics_period_s"),
            self.diagnostics_values,
            self._summary,
        )
        self._state_label = "inactive"
        model = (
            "(shared)"
            if self._engine_provider is not None
            else (getattr(self._engine, "model_id", "") or "(none)")
        )
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.2f} s: serving "
            f"{self.resolve_action_name()} with model {model}, prepared {prepared}"
        )
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Subscribe to the camera (standalone) and take goals."""
        try:
            if self._ingest is not None:
                self._ingest.activate()
        except Exception as error:
            self.get_logger().error(f"activate failed: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        self._state_label = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Unsubscribe and refuse new goals (running ones finish)."""
        if self._ingest is not None:
            self._ingest.deactivate()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Remove the action server, free the model and the buffer."""
        self._teardown()
        self._state_label = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything on the way to finalized."""
        self._teardown()
        self._state_label = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """Recover to unconfigured after a failed transition."""
        self._teardown()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Free the engine if this node built it (called by :func:`run` at exit)."""
        self._teardown()

    def _teardown(self) -> None:
        if self._ingest is not None:
            self._ingest.deactivate()
            self._ingest = None
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None
        if self._diagnostics is not None:
            self._diagnostics.close()
            self._diagnostics = None
        if self._reward_pub is not None:
            self.destroy_publisher(self._reward_pub)
            self._reward_pub = None
        with self._score_lock:  # a goal being scored finishes first
            engine, self._engine = self._engine, None
            self._frame_source = None
        if engine is not None and self._engine_provider is None:
            engine.close()

    # ------------------------------------------------------------------------------ goals
    def _refuse(self, reason: str, text: str) -> GoalResponse:
        self.counters.add(f"goals_rejected_{reason}")
        self.counters.note_error("goals_rejected", text)
        self.get_logger().warning(f"goal rejected: {text}", throttle_duration_sec=2.0)
        return GoalResponse.REJECT

    def _on_goal(self, goal: Any) -> GoalResponse:
        """Accept a goal only while active and while fewer than goal_queue_size goals are unfinished."""
        self.counters.add("goals_received")
        if self._state_label != "active":
            return self._refuse(
                "inactive", f"node is {self._state_label}: goals are taken only when it is active"
            )
        with self._goals_lock:
            limit = int(value(self, "goal_queue_size"))
            if self._goals_pending >= limit:
                busy = True
            else:
                busy = False
                self._goals_pending += 1
        if busy:
            return self._refuse(
                "busy", f"busy: {limit} goal(s) unfinished (goal_queue_size={limit}); send it again later"
            )
        self.counters.add("goals_accepted")
        return GoalResponse.ACCEPT

    def _goal_done(self, outcome: str) -> None:
        with self._goals_lock:
            self._goals_pending = max(0, self._goals_pending - 1)
        self.counters.add(f"goals_{outcome}")

    def _annotator(self, engine: Any) -> RewardAnnotator:
        per_call = int(value(self, "frames_per_call")) or None
        return RewardAnnotator(engine, frames_per_call=per_call, subject=value(self, "subject"))

    def _result(self, goal: Any) -> ScoreTrajectory.Result:
        result = ScoreTrajectory.Result()
        msg = result.reward
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.instruction = clip(goal.instruction, 2000)
        msg.episode_id = clip(goal.episode_id, 256)
        msg.episode_score = float("nan")
        msg.method = clip(goal.mode, 64)
        return result

    def _abort(self, goal_handle: Any, result: Any, error: str, outcome: str = "aborted") -> Any:
        result.reward.error = error
        self.get_logger().warning(f"goal aborted: {clip(error)}")
        goal_handle.abort()
        self._goal_done(outcome)
        return result

    def _execute_fallback(self, goal_handle: Any) -> ScoreTrajectory.Result:
        """The result when ``_execute`` itself failed (counted by the boundary)."""
        result = ScoreTrajectory.Result()
        result.reward.error = "internal error while scoring (counted in diagnostics)"
        result.reward.episode_score = float("nan")
        self._goal_done("failed")
        try:
            goal_handle.abort()
        except Exception as error:  # the goal may already be terminal; count, never raise
            self.boundary.failed("execute_abort", error)
        return result

    def _execute(self, goal_handle: Any) -> ScoreTrajectory.Result:
        goal = goal_handle.request
        result = self._result(goal)
        problem = goal_problem(goal, value(self, "bag_root"))
        if problem:  # refused at once: a bad goal does not wait for the model
            return self._abort(goal_handle, result, problem, "invalid")
        started = time.perf_counter()
        with self._score_lock:  # one model: goals take turns
            if goal_handle.is_cancel_requested:
                result.reward.error = "cancelled before scoring started"
                goal_handle.canceled()
                self._goal_done("canceled")
                return result
            try:
                scores, episode_id, error = self._score(goal, goal_handle)
            except ValueError as exc:  # a goal that cannot be scored: say why, keep serving
                return self._abort(goal_handle, result, str(exc))
        msg = result.reward
        msg.episode_id = episode_id
        scores_to_msg(scores, msg)
        msg.error = "; ".join(filter(None, [error, scores.error]))
        if scores.cancelled:
            goal_handle.canceled()
            self._goal_done("canceled")
        else:
            goal_handle.succeed()
            self._goal_done("succeeded")
            if self._reward_pub is not None:
                self._reward_pub.publish(msg)
        self.get_logger().info(
            f"episode {episode_id!r}: {scores.progress.size} frames, score {scores.episode_score:.3f}, "
            f"{'cancelled, ' if scores.cancelled else ''}{time.perf_counter() - started:.2f} s"
        )
        return result

    def _score(self, goal: Any, goal_handle: Any) -> tuple[TrajectoryScores, str, str]:
        """Gather frames and score a valid goal; ValueError with the reason when it cannot be scored."""
        engine = self._engine
        if engine is None or not getattr(engine, "model_loaded", True):
            raise ValueError("no model loaded: start the node with model_path set")
        stride = max(1, int(goal.stride))
        target = float(goal.target_displacement) if goal.mode == "displacement" else 0.0
        target = target if target > 0 else None
        window = goal_window(goal)
        annotator = self._annotator(engine)
        cancel = _GoalCancelFlag(goal_handle)

        def feedback(done: int, total: int) -> None:
            goal_handle.publish_feedback(ScoreTrajectory.Feedback(frames_done=done, frames_total=total))

        if goal.bag_path:
            bag = Path(goal.bag_path)
            episode_id = goal.episode_id or (bag.stem if bag.suffix == ".mcap" else bag.name)
            options = LabelOptions(
                instruction=goal.instruction,
                mode=goal.mode,
                target=target,
                stride=stride,
                image_topic=goal.topic or value(self, "image_topic") or AUTO,
                start=window.start,
                end=window.end,
            )
            outcome = score_recording(
                annotator, bag, episode_id, options, progress_callback=feedback, cancel_event=cancel
            )
            if outcome.scores is None:
                raise ValueError(outcome.error)
            return outcome.scores, episode_id, outcome.error
        if self._frame_source is None:
            raise ValueError("no live frame buffer (subscribe_camera is false): give a bag_path")
        frames = self._frame_source(window.start, window.end)
        if not frames:
            bounds = (
                ""
                if window.start is None and window.end is None
                else f" in the window {window.start}..{window.end}"
            )
            raise ValueError(f"no frames in the live buffer{bounds}")
        episode_id = goal.episode_id or f"live_{frames[0].stamp:.3f}_{frames[-1].stamp:.3f}"
        scores = annotator.score(
            frames,
            goal.instruction,
            mode=goal.mode,
            target=target,
            stride=stride,
            progress_callback=feedback,
            cancel_event=cancel,
        )
        if scores.model_failure:
            raise ValueError(f"every model call failed: {scores.model_failure}")
        return scores, episode_id, ""

    # ------------------------------------------------------------------------------ diagnostics
    def diagnostics_values(self) -> dict[str, str]:
        """The key/values of the /diagnostics status."""
        values: dict[str, Any] = {
            "state": self._state_label,
            "model_id": str(getattr(self._engine, "model_id", "") or ""),
            "model_loaded": bool(getattr(self._engine, "model_loaded", False)),
        }
        with self._goals_lock:
            values["goals_pending"] = self._goals_pending
        values["goal_queue_size"] = value(self, "goal_queue_size")
        ingest = self._ingest
        if ingest is not None:
            values["buffer_frames"] = len(ingest.buffer)
            values.update(
                {
                    k: v
                    for k, v in ingest.buffer.counters.items()
                    if k.startswith(("dropped_", "evicted_", "received_", "accepted_", "resets"))
                }
            )
        counts, errors = self.counters.snapshot()
        values.update(sorted(counts.items()))
        values.update({f"last_error_{key}": text for key, text in errors.items()})
        return {key: str(item) for key, item in values.items()}

    def _summary(self, values: dict[str, str]) -> tuple[int, str]:
        if self._state_label != "active":
            return diag.WARN, f"node is {self._state_label}"
        if values["model_loaded"] != "True":
            return diag.WARN, "no model loaded"
        return diag.OK, "scoring"


def main(args: list[str] | None = None) -> int:
    """``reward_annotator_node`` entry point (``ros2 run spatial_mllm_ros reward_annotator_node``)."""
    return run([RewardAnnotatorNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
