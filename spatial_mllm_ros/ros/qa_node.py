# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial_mllm_node``: camera streams in, typed spatial answers out.

A lifecycle node holding the frame buffer and the QA engine in one process (rclpy has no intra-process
transport, so images must not cross processes twice). This file is the node's transitions and wiring:

* configure: frame buffer, engine built and prepared at the shapes it will see (``max_frames`` frames of
  ``input_size`` or the first CameraInfo's size), selection publisher, diagnostics;
* activate: camera ingest (:mod:`~spatial_mllm_ros.ros.camera_ingest`) and ``~/question``;
* deactivate: both removed again (questions already accepted are still answered);
* cleanup/shutdown: engine and buffer freed.

``~/ask`` and ``~/answer`` exist in every state: a question while the node is not active is answered
with a rejection naming the state. Questions go through one bounded queue and worker
(:mod:`~spatial_mllm_ros.ros.questions`); every ``~/question`` and ``~/ask`` gets exactly one
``SpatialAnswer`` on ``~/answer``. Every callback is a boundary (:mod:`~spatial_mllm_ros.ros.boundary`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import CameraInfo

from spatial_mllm_ros.core.buffer import FrameBuffer
from spatial_mllm_ros.engine import parameters as table
from spatial_mllm_ros.engine.question_queue import RejectedError
from spatial_mllm_ros.engine.requests import QuestionRequest
from spatial_mllm_ros.msg import FrameSelection, SpatialAnswer
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros import diagnostics as diag
from spatial_mllm_ros.ros.boundary import Boundary, Counters
from spatial_mllm_ros.ros.camera_ingest import INPUT_KINDS, CameraIngest, camera_specs, ingest_specs
from spatial_mllm_ros.ros.engine_params import build_engine, engine_specs, from_table, prepare_engine
from spatial_mllm_ros.ros.parameters import ParameterTable, Spec, value
from spatial_mllm_ros.ros.questions import ASK_QOS, QuestionDesk
from spatial_mllm_ros.ros.runtime import run
from spatial_mllm_ros.srv import AskSpatial

NODE_NAME = "spatial_mllm_node"
RESERVED_CAMERA_NAMES = ("buffer", "qos", "tf", "image")  # parameter groups of the node
DEFAULT_MAX_IMAGE_PIXELS = 1920 * 1200


def _cameras_problem(names: Any) -> str:
    names = list(names)
    if not names or len(set(names)) != len(names) or not all(n and "." not in n for n in names):
        return f"cameras must be distinct non-empty names without dots, got {names}"
    reserved = sorted({n for n in names if n in RESERVED_CAMERA_NAMES})
    return f"camera names {reserved} clash with parameter groups" if reserved else ""


def node_specs() -> list[Spec]:
    """Parameters of this node beyond the engine's and the ingest's (buffer and queue from the table)."""
    return [
        Spec(
            "autostart",
            False,
            "Configure and activate by itself at start (without a lifecycle manager or launch events).",
        ),
        *from_table(table.BUFFER_PARAMETERS),
        *from_table(table.QUEUE_PARAMETERS),
        Spec("diagnostics_period_s", 1.0, "Period of the /diagnostics status.", value_range=(0.05, 60.0)),
        Spec(
            "cameras",
            ["camera"],
            "Camera names; each has the parameters <name>.namespace, <name>.image_topic, ...",
            check=_cameras_problem,
        ),
    ]


class SpatialQANode(LifecycleNode):
    """The spatial question-answering lifecycle node (see the module docstring).

    Args:
        node_name: ROS node name.
        engine_provider: returns the engine shared with other nodes of the process (composition); this
            node prepares it but does not close it. None = the node builds its own at configure.
        **kwargs: passed to ``rclpy.lifecycle.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(
        self, node_name: str = NODE_NAME, *, engine_provider: Callable[[], Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._engine_provider = engine_provider
        self._engine: Any | None = None
        self._engine_lock = threading.Lock()  # held while answering; teardown waits for it
        self._buffer: FrameBuffer | None = None
        self._ingest: CameraIngest | None = None
        self._diagnostics: diag.Diagnostics | None = None
        self._selection_pub = None
        self._state_label = "unconfigured"
        self._configure_error = ""
        self._prepared = ""
        self._latency_lock = threading.Lock()
        self._last_latency: dict[str, float] = {}
        self.counters = Counters()
        self.boundary = Boundary(self.counters, self.get_logger())
        self.parameter_table = ParameterTable()
        self.add_on_set_parameters_callback(self.parameter_table.validate)
        self.parameter_table.declare(
            self, [*engine_specs(), *node_specs(), *ingest_specs(DEFAULT_MAX_IMAGE_PIXELS)]
        )
        self.cameras: list[str] = list(value(self, "cameras"))
        for camera in self.cameras:
            self.parameter_table.declare(self, camera_specs(camera), prefix=camera)
        self.executor_threads = int(value(self, "queue_size")) + 1
        self._service_group = ReentrantCallbackGroup()
        self.desk = QuestionDesk(
            self,
            self.boundary,
            self._answer,
            self._decorate,
            self._inactive_reason,
            capacity=int(value(self, "queue_size")),
            max_frames=int(value(self, "max_frames")),
        )
        self.create_service(
            AskSpatial,
            "~/ask",
            self.boundary.guard("ask", self._on_ask, self.desk.ask_fallback),
            qos_profile=ASK_QOS,
            callback_group=self._service_group,
        )

    @property
    def frame_buffer(self) -> FrameBuffer | None:
        """The node's frame buffer between configure and cleanup (None otherwise)."""
        return self._buffer

    @property
    def camera_ingest(self) -> CameraIngest | None:
        """The camera ingest between configure and cleanup (frames with tf poses resolved)."""
        return self._ingest

    @property
    def lifecycle_state(self) -> str:
        """One of "unconfigured", "inactive", "active" or "finalized"."""
        return self._state_label

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Configure and activate by itself when ``autostart`` is set (called by :func:`run`)."""
        if value(self, "autostart") and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Build the buffer and the ingest, build and prepare the engine, create publishers."""
        started = time.perf_counter()
        try:
            self._buffer = table.build_frame_buffer(
                {spec.name: value(self, spec.name) for spec in table.BUFFER_PARAMETERS}
            )
            self._ingest = CameraIngest(self, self._buffer, self.counters, self.boundary, self.cameras)
            self._engine = (
                self._engine_provider() if self._engine_provider is not None else build_engine(self)
            )
            self._prepare()
        except Exception as error:  # a bad model path, backend or topic must not kill the node
            self._configure_error = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self._selection_pub = self.create_lifecycle_publisher(FrameSelection, "~/selected_frames", 10)
        self._diagnostics = diag.Diagnostics(
            self,
            self.boundary,
            "spatial QA",
            value(self, "diagnostics_period_s"),
            self.diagnostics_values,
            self._summary,
        )
        self._state_label = "inactive"
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.2f} s: model {self._model_id() or '(none)'}, "
            f"backend {self._backend_name()}, prepared {self._prepared}, cameras {self.cameras}"
        )
        return super().on_configure(state)

    def _prepare(self) -> None:
        """Prepare the engine at (max_frames, input size) so that no question builds anything."""
        input_hw = None
        if (
            value(self, "warmup")
            and getattr(self._engine, "model_loaded", False)
            and not (value(self, "input_width") and value(self, "input_height"))
        ):
            width, height = self._first_camera_info_size()
            input_hw = (height, width) if width > 0 and height > 0 else None
            if input_hw is None:
                self.get_logger().warning(
                    "no input size: input_width/input_height are 0 and no camera_info arrived within "
                    f"camera_info_timeout_s={value(self, 'camera_info_timeout_s')} s; only the language model"
                    " is warmed up and the first question builds the visual engine"
                )
        self._prepared = prepare_engine(self, self._engine, input_hw)

    def _first_camera_info_size(self) -> tuple[int, int]:
        """(width, height) of the first camera's first CameraInfo, (0, 0) after the timeout."""
        topic = self._ingest.topics[self.cameras[0]].camera_info_topic
        timeout = float(value(self, "camera_info_timeout_s"))
        probe = Node(
            f"{self.get_name()}_camera_info_probe", context=self.context, namespace=self.get_namespace()
        )
        try:
            received, msg = wait_for_message(CameraInfo, probe, topic, time_to_wait=timeout)
        finally:
            probe.destroy_node()
        if not received:
            return 0, 0
        return int(msg.width), int(msg.height)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Subscribe to the cameras and to ``~/question``; activate the publishers."""
        try:
            self._ingest.activate()
            self.desk.subscribe(self._service_group)
        except Exception as error:
            self.get_logger().error(f"activate failed: {type(error).__name__}: {error}")
            self._unsubscribe()
            return TransitionCallbackReturn.FAILURE
        self._state_label = "active"
        self.get_logger().info("active: listening to cameras and questions")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Unsubscribe (questions already accepted are still answered)."""
        self._unsubscribe()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Free the engine and the buffer, remove publishers."""
        self._teardown()
        self._state_label = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """Release everything on the way to finalized."""
        self._unsubscribe()
        self._teardown()
        self._state_label = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """Recover to unconfigured after a failed transition."""
        self._unsubscribe()
        self._teardown()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the worker and free the model at process exit (called by :func:`run`)."""
        self._unsubscribe()
        self.desk.close()
        self._teardown()

    def _unsubscribe(self) -> None:
        self.desk.unsubscribe()
        if self._ingest is not None:
            self._ingest.deactivate()

    def _teardown(self) -> None:
        if self._diagnostics is not None:
            self._diagnostics.close()
            self._diagnostics = None
        if self._selection_pub is not None:
            self.destroy_lifecycle_publisher(self._selection_pub)
            self._selection_pub = None
        with self._engine_lock:  # a question being answered finishes first
            engine, self._engine = self._engine, None
            self._buffer, self._ingest = None, None
        if engine is not None and self._engine_provider is None:
            engine.close()

    # ------------------------------------------------------------------------------ questions
    def _inactive_reason(self) -> str:
        if self._state_label == "active":
            return ""
        reason = f"node is {self._state_label}: questions are answered only when it is active"
        if self._configure_error:
            reason += f" (last configure failed: {self._configure_error})"
        return reason

    def _on_ask(self, request: AskSpatial.Request, response: AskSpatial.Response) -> AskSpatial.Response:
        return self.desk.on_ask(request, response, float(value(self, "request_timeout_s")))

    def _answer(self, request: QuestionRequest) -> SpatialAnswer:
        """Worker thread: answer one validated question from the buffered frames."""
        with self._engine_lock:
            engine, ingest, buffer = self._engine, self._ingest, self._buffer
            if engine is None or ingest is None or buffer is None:
                raise RejectedError("not_configured", "node is not configured")
            start, end = request.window_start, request.window_end
            frames = ingest.frames(start=start, end=end)
            if not frames and getattr(engine, "model_loaded", True):
                window = "" if start is None and end is None else f" in the window {start}..{end}"
                raise RejectedError(
                    "no_frames",
                    f"no camera frames buffered{window} ({len(buffer)} in the buffer); "
                    f"check the camera topics of {self.cameras}",
                )
            started = time.monotonic()
            answer = engine.ask(
                frames,
                request.question,
                list(request.options) or None,
                request.task_type or None,
                request.max_frames or int(value(self, "max_frames")),
                request.query_id,
            )
        frame_id = frames[-1].frame_id if frames else ""
        msg = conv.answer_to_msg(answer, stamp=self.get_clock().now().to_msg(), frame_id=frame_id)
        with self._latency_lock:
            self._last_latency.update(
                selection_ms=answer.selection_ms,
                encode_ms=answer.encode_ms,
                generate_ms=answer.generate_ms,
                total_ms=(time.monotonic() - started) * 1e3,
            )
        if answer.error:
            self.counters.add("failed")
            self.counters.note_error("failed", answer.error)
        selection_pub = self._selection_pub
        if answer.selection is not None and selection_pub is not None and selection_pub.is_activated:
            selection_pub.publish(
                conv.selection_to_msg(
                    answer.selection,
                    answer.frame_stamps,
                    stamp=self.get_clock().now().to_msg(),
                    frame_id=frame_id,
                )
            )
        return msg

    def _decorate(self, msg: SpatialAnswer) -> None:
        msg.model_id = msg.model_id or self._model_id()
        msg.backend = msg.backend or self._backend_name()

    # ------------------------------------------------------------------------------ diagnostics
    def _model_id(self) -> str:
        return str(getattr(self._engine, "model_id", "") or "")

    def _backend_name(self) -> str:
        return str(getattr(self._engine, "backend_name", "") or value(self, "backend"))

    def diagnostics_values(self) -> dict[str, str]:
        """The key/values of the /diagnostics status (every part read under its owner's lock)."""
        buffer = self._buffer
        values: dict[str, Any] = {
            "state": self._state_label,
            "model_id": self._model_id(),
            "backend": self._backend_name(),
            "model_loaded": bool(getattr(self._engine, "model_loaded", False)),
            "prepared": self._prepared,
        }
        if buffer is not None:
            capacity = buffer.max_frames * max(1, len(self.cameras))
            nbytes = buffer.nbytes
            values.update(
                buffer_frames=len(buffer),
                buffer_capacity_frames=capacity,
                buffer_fill=round(len(buffer) / capacity, 4),
                buffer_bytes=nbytes,
                buffer_fill_bytes=round(nbytes / buffer.max_bytes, 4),
            )
            values.update(
                {
                    k: v
                    for k, v in buffer.counters.items()
                    if k.startswith(("dropped_", "evicted_", "received_", "accepted_", "resets"))
                }
            )
        values["queue_size"] = self.desk.queue.capacity
        values["queue_depth"] = self.desk.queue.pending
        values["questions_dropped_before_queue"] = 0
        values.update(sorted(self.desk.counts().items()))
        counts, errors = self.counters.snapshot()
        values.update(sorted(counts.items()))
        with self._latency_lock:
            values.update({f"last_{key}": round(latency, 2) for key, latency in self._last_latency.items()})
        values.update({f"last_error_{key}": text for key, text in errors.items()})
        return {key: str(item) for key, item in values.items()}

    def _summary(self, values: dict[str, str]) -> tuple[int, str]:
        malformed = sum(int(values.get(f"malformed_{kind}", "0")) for kind in INPUT_KINDS)
        if self._state_label != "active":
            return diag.WARN, f"node is {self._state_label}"
        if values["model_loaded"] != "True":
            return diag.WARN, "no model loaded"
        if malformed:
            return diag.WARN, f"{malformed} malformed camera message(s) dropped"
        return diag.OK, "answering"


def main(args: list[str] | None = None) -> int:
    """``spatial_mllm_node`` entry point (``ros2 run spatial_mllm_ros spatial_mllm_node --ros-args ...``)."""
    return run([SpatialQANode], args)


if __name__ == "__main__":
    raise SystemExit(main())
