# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``reward_annotator_node``: the ScoreTrajectory action, per-frame progress and rewards online.

A policy-learning pipeline (or an operator) sends a ``ScoreTrajectory`` goal naming an
instruction, a mode and where the trajectory is: the node's live frame buffer (``bag_path`` empty,
optionally a time window) or a rosbag2 recording (``bag_path`` + image ``topic`` + window). The node
scores it with :class:`~spatial_mllm_ros.reward.annotator.RewardAnnotator`, publishing feedback
(scored frames done / total) after every model call, and answers with a ``TrajectoryReward``,
which it also publishes on ``~/trajectory_reward`` for goals that complete.

* Cancel works between model calls: the goal ends CANCELED with the frames scored so far.
* Bad goals (unknown mode, empty instruction, missing or unreadable bag, no frames, no model) end
  ABORTED with the reason in ``result.reward.error``; the node keeps serving.
* Goals are scored one at a time (they share one model); later goals wait their turn.

Standalone, the node subscribes to one camera (``image_topic``, optional depth/camera_info/pose)
to fill its own buffer. Composed with ``spatial_mllm_node`` in one process
(:mod:`spatial_mllm_ros.ros.composed`), it is given the shared engine and the QA node's frame
buffer instead, so the model and the frames exist once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from spatial_mllm_ros.action import ScoreTrajectory
from spatial_mllm_ros.core.buffer import FrameBuffer
from spatial_mllm_ros.msg import TrajectoryReward
from spatial_mllm_ros.reward.annotator import MODES, RewardAnnotator, TrajectoryScores
from spatial_mllm_ros.reward.episodes import DEFAULT_TOPICS, LabelOptions, score_recording
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros.runtime import parameter_descriptor, run

NODE_NAME = "reward_annotator_node"
ACTION_NAME = "~/score_trajectory"
REWARD_TOPIC = "~/trajectory_reward"

# frame_source(start, end) -> time-ordered frames of the live buffer (None = unbounded).
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


class RewardAnnotatorNode(Node):
    """Serves ``~/score_trajectory`` and publishes ``~/trajectory_reward`` (see the module docstring).

    Args:
        node_name: ROS node name.
        engine: a shared ``SpatialQA`` (or anything with ``generate_text``); when None, one is
            loaded from ``model_path`` (and closed with the node).
        frame_source: where live-buffer goals take frames from; when None, the node subscribes to
            ``image_topic`` and keeps its own buffer.
        **kwargs: passed to ``rclpy.node.Node``.
    """

    def __init__(self, node_name: str = NODE_NAME, *, engine: Any | None = None,
                 frame_source: FrameSource | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self._owns_engine = engine is None
        self._engine = engine if engine is not None else self._load_engine()
        self._frame_source = frame_source
        self._buffer: FrameBuffer | None = None
        self._subscriptions_list: list = []
        self._score_lock = threading.Lock()
        self.executor_threads = 2  # one running goal + one waiting/cancel service at a time
        if frame_source is None and self._param("subscribe_camera"):
            self._start_camera()
        self._reward_pub = self.create_publisher(
            TrajectoryReward, REWARD_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._action_server = ActionServer(
            self, ScoreTrajectory, ACTION_NAME, self._execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        model = "(shared)" if not self._owns_engine else getattr(self._engine, "model_id", "") or "(none)"
        self.get_logger().info(f"serving {self.resolve_action_name()} with model {model}")

    # ------------------------------------------------------------------------------ set-up
    def _declare_parameters(self) -> None:
        def d(text: str, read_only: bool = True, integer_range: tuple[int, int] | None = None):
            return parameter_descriptor(text, read_only=read_only, integer_range=integer_range)

        self.declare_parameters("", [
            ("model_path", "", d("Spatial-MLLM checkpoint directory (ignored when the engine is shared); "
                                 "empty = no model: goals are aborted with 'no model loaded'.")),
            ("backend", "torch", d("Inference backend: torch, onnxruntime or tensorrt.")),
            ("device", "cpu", d("Torch device.")),
            ("dtype", "float32", d("Model dtype: float32, bfloat16 or float16.")),
            ("max_frames", 16, d("Largest frame set per model call.", integer_range=(2, 256))),
            ("max_new_tokens", 16, d("Longest generated answer in tokens.", integer_range=(1, 1024))),
            ("frames_per_call", 0, d("Frame pairs (frame 0, frame k) per model call; 0 = max_frames - 1.",
                                     read_only=False, integer_range=(0, 255))),
            ("subject", "the object the robot is manipulating",
             d("What moves, in displacement-mode prompts.", read_only=False)),
            ("subscribe_camera", True, d("Keep an own frame buffer from image_topic (standalone node).")),
            ("image_topic", DEFAULT_TOPICS["image_topic"],
             d("Colour image topic of the live buffer, and the default image topic inside bags.")),
            ("depth_topic", "", d("Depth topic of the live buffer (empty: none; scoring needs only RGB).")),
            ("camera_info_topic", "", d("CameraInfo topic of the live buffer (empty: none).")),
            ("pose_topic", "", d("PoseStamped topic of the live buffer (empty: none).")),
            ("buffer.max_frames", 600, d("Frames kept in the live buffer.", integer_range=(1, 100000))),
            ("buffer.max_megabytes", 512, d("Image memory bound of the live buffer (MiB).",
                                            integer_range=(1, 1000000))),
        ])

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _load_engine(self) -> Any | None:
        model_path = self._param("model_path")
        if not model_path:
            return None
        from spatial_mllm_ros.engine import SpatialQA

        return SpatialQA(model_path, backend=self._param("backend"), device=self._param("device"),
                         dtype=self._param("dtype"), max_frames=self._param("max_frames"),
                         max_new_tokens=self._param("max_new_tokens"))

    def _start_camera(self) -> None:
        self._buffer = FrameBuffer(max_frames=self._param("buffer.max_frames"),
                                   max_bytes=int(self._param("buffer.max_megabytes")) * 1024 * 1024)
        group = MutuallyExclusiveCallbackGroup()
        qos = qos_profile_sensor_data
        camera = "camera"
        buffer = self._buffer

        def on_image(msg: Image) -> None:
            try:
                rgb = conv.image_to_rgb(msg)
            except ValueError as error:
                self.get_logger().warning(f"dropped malformed image: {error}", throttle_duration_sec=5.0)
                return
            buffer.add_image(camera, conv.stamp_to_sec(msg.header.stamp), rgb, msg.header.frame_id)

        def on_depth(msg: Image) -> None:
            try:
                depth, scale = conv.depth_to_array(msg)
            except ValueError as error:
                self.get_logger().warning(f"dropped malformed depth: {error}", throttle_duration_sec=5.0)
                return
            buffer.add_depth(camera, conv.stamp_to_sec(msg.header.stamp), depth, scale)

        def on_info(msg: CameraInfo) -> None:
            try:
                buffer.set_intrinsics(camera, conv.camera_info_to_k(msg))
            except ValueError as error:
                self.get_logger().warning(f"dropped malformed camera_info: {error}",
                                          throttle_duration_sec=5.0)

        def on_pose(msg: PoseStamped) -> None:
            try:
                buffer.add_pose(conv.stamp_to_sec(msg.header.stamp), conv.pose_to_matrix(msg.pose),
                                camera_id=camera)
            except ValueError as error:
                self.get_logger().warning(f"dropped malformed pose: {error}", throttle_duration_sec=5.0)

        subscribe = self._subscriptions_list.append
        subscribe(self.create_subscription(Image, self._param("image_topic"), on_image, qos,
                                           callback_group=group))
        if self._param("depth_topic"):
            subscribe(self.create_subscription(Image, self._param("depth_topic"), on_depth, qos,
                                               callback_group=group))
        if self._param("camera_info_topic"):
            subscribe(self.create_subscription(CameraInfo, self._param("camera_info_topic"), on_info, qos,
                                               callback_group=group))
        if self._param("pose_topic"):
            subscribe(self.create_subscription(PoseStamped, self._param("pose_topic"), on_pose, qos,
                                               callback_group=group))
        self._frame_source = lambda start, end: buffer.frames(camera_id=camera, start=start, end=end)

    def resolve_action_name(self) -> str:
        """Fully qualified name of the action (``<node>/score_trajectory``)."""
        return f"{self.get_fully_qualified_name()}/score_trajectory"

    # ------------------------------------------------------------------------------ goals
    def _annotator(self) -> RewardAnnotator:
        per_call = int(self._param("frames_per_call")) or None
        return RewardAnnotator(self._engine, frames_per_call=per_call, subject=self._param("subject"))

    def _execute(self, goal_handle: Any) -> ScoreTrajectory.Result:
        goal = goal_handle.request
        result = ScoreTrajectory.Result()
        msg = result.reward
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.instruction = goal.instruction
        msg.episode_score = float("nan")
        msg.method = goal.mode
        started = time.perf_counter()
        with self._score_lock:  # one model: goals take turns
            if goal_handle.is_cancel_requested:
                msg.error = "cancelled before scoring started"
                goal_handle.canceled()
                return result
            try:
                scores, episode_id, error = self._score(goal, goal_handle)
            except ValueError as exc:  # a bad goal: say why, keep serving
                msg.episode_id = goal.episode_id
                msg.error = str(exc)
                self.get_logger().warning(f"goal aborted: {msg.error}")
                goal_handle.abort()
                return result
            except Exception as exc:  # never let a goal take the node down
                msg.episode_id = goal.episode_id
                msg.error = f"internal error: {type(exc).__name__}: {exc}"
                self.get_logger().error(f"goal aborted: {msg.error}")
                goal_handle.abort()
                return result
        msg.episode_id = episode_id
        scores_to_msg(scores, msg)
        msg.error = "; ".join(filter(None, [error, scores.error]))
        if scores.cancelled:
            goal_handle.canceled()
        else:
            goal_handle.succeed()
            self._reward_pub.publish(msg)
        self.get_logger().info(
            f"episode {episode_id!r}: {scores.progress.size} frames, score {scores.episode_score:.3f}, "
            f"{'cancelled, ' if scores.cancelled else ''}{time.perf_counter() - started:.2f} s")
        return result

    def _score(self, goal: Any, goal_handle: Any) -> tuple[TrajectoryScores, str, str]:
        """Validate, gather frames, score; ValueError with the reason for a bad goal."""
        if self._engine is None:
            raise ValueError("no model loaded: start the node with model_path set")
        if goal.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {goal.mode!r}")
        if not goal.instruction.strip():
            raise ValueError("instruction must not be empty")
        stride = max(1, int(goal.stride))
        target = float(goal.target_displacement) if goal.mode == "displacement" else 0.0
        target = target if target > 0 and np.isfinite(target) else None
        start = conv.stamp_to_sec(goal.window_start)
        end = conv.stamp_to_sec(goal.window_end)
        start, end = (None, None) if start == 0.0 and end == 0.0 else (start or None, end or None)
        if start is not None and end is not None and end < start:
            raise ValueError(f"time window ends ({end:.3f}) before it starts ({start:.3f})")
        annotator = self._annotator()
        cancel = _GoalCancelFlag(goal_handle)

        def feedback(done: int, total: int) -> None:
            goal_handle.publish_feedback(ScoreTrajectory.Feedback(frames_done=done, frames_total=total))

        if goal.bag_path:
            bag = Path(goal.bag_path)
            if not bag.exists():
                raise ValueError(f"bag not found: {bag} (no such file or directory)")
            episode_id = goal.episode_id or (bag.stem if bag.suffix == ".mcap" else bag.name)
            options = LabelOptions(instruction=goal.instruction, mode=goal.mode, target=target,
                                   stride=stride, image_topic=goal.topic or self._param("image_topic"),
                                   start=start, end=end)
            outcome = score_recording(annotator, bag, episode_id, options, progress_callback=feedback,
                                      cancel_event=cancel)
            if outcome.scores is None:
                raise ValueError(outcome.error)
            return outcome.scores, episode_id, outcome.error
        if self._frame_source is None:
            raise ValueError("no live frame buffer (subscribe_camera is false): give a bag_path")
        frames = self._frame_source(start, end)
        if not frames:
            window = "" if start is None and end is None else f" in the window {start}..{end}"
            raise ValueError(f"no frames in the live buffer{window}")
        episode_id = goal.episode_id or f"live_{frames[0].stamp:.3f}_{frames[-1].stamp:.3f}"
        scores = annotator.score(frames, goal.instruction, mode=goal.mode, target=target, stride=stride,
                                 progress_callback=feedback, cancel_event=cancel)
        if scores.model_failure:
            raise ValueError(f"every model call failed: {scores.model_failure}")
        return scores, episode_id, ""

    def close(self) -> None:
        """Free the engine if this node loaded it (called by :func:`run` at exit)."""
        engine, self._engine = self._engine, None
        if engine is not None and self._owns_engine:
            close = getattr(engine, "close", None)
            if callable(close):
                close()


def main(args: list[str] | None = None) -> int:
    """``reward_annotator_node`` entry point (``ros2 run spatial_mllm_ros reward_annotator_node``)."""
    return run([RewardAnnotatorNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
