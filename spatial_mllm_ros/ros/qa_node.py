# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial_mllm_node``: camera streams in, typed spatial answers out.

A lifecycle node holding the frame buffer and the QA engine in one process (rclpy has no intra-process
transport, so images must not cross processes twice):

* configure: build the frame buffer, load the engine (model, backend) and warm it up, create the
  answer/selection publishers, the diagnostics timer and the inference worker;
* activate: subscribe to the cameras (image or compressed image, optional depth, camera_info, pose
  from PoseStamped/Odometry topics or tf2 when it is installed) and to ``~/question``;
* deactivate: unsubscribe; cleanup/shutdown: stop the worker, free the model.

Questions (``~/ask`` service or ``~/question`` topic) go to one worker thread behind a bounded queue:
camera callbacks never wait for inference, and when ``queue_size`` questions are already pending a new
one is answered at once with a "busy" rejection, never silently dropped. ``~/ask`` exists in every
state and answers a rejection naming the state when the node is not active. Every answer is also
published on ``~/answer``; malformed camera messages are counted (``/diagnostics``) and dropped.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import (
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from spatial_mllm_ros.core.buffer import ACCEPTED, FrameBuffer
from spatial_mllm_ros.msg import FrameSelection, SpatialAnswer
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros.runtime import parameter_descriptor, run
from spatial_mllm_ros.srv import AskSpatial

try:  # tf2 is part of a normal ROS 2 install, not of the pip wheels
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

NODE_NAME = "spatial_mllm_node"
BACKENDS = ("torch", "onnxruntime", "tensorrt")
DTYPES = ("float32", "bfloat16", "float16")
SELECTORS = ("uniform", "space_aware", "space_aware_incremental", "space_aware_points")
POSE_SOURCES = ("pose_stamped", "odometry", "tf", "none")
IMAGE_TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
# Parameters whose value is one of a fixed set (validated at start-up and on change).
LLM_QUANTIZATIONS = ("none", "int8", "int4")
CHOICES: dict[str, tuple[str, ...]] = {
    "backend": BACKENDS,
    "llm_backend": BACKENDS,
    "llm_quantization": LLM_QUANTIZATIONS,
    "dtype": DTYPES,
    "selector": SELECTORS,
    "qos.images.reliability": RELIABILITIES,
}
CAMERA_CHOICES: dict[str, tuple[str, ...]] = {
    "image_transport": IMAGE_TRANSPORTS,
    "pose_source": POSE_SOURCES,
}
IDENTITY_OFFSET = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
MAX_FRAMES_LIMIT = 256  # upper bound of the max_frames parameter and of a request's max_frames
RESERVED_CAMERA_NAMES = ("buffer", "qos", "tf")  # parameter groups of the node
# Camera inputs; diagnostics count malformed_<kind> and malformed_<kind>_<reason> for each.
INPUT_KINDS = ("image", "depth", "camera_info", "pose")


@dataclass
class _Question:
    """One accepted question on its way to the worker."""

    question: str
    options: list[str]
    task_type: str
    start: float | None
    end: float | None
    max_frames: int
    query_id: str
    future: Future = field(default_factory=Future)
    accepted_at: float = field(default_factory=time.monotonic)


class SpatialQANode(LifecycleNode):
    """The spatial question-answering lifecycle node (see the module docstring).

    Args:
        node_name: ROS node name.
        engine: an already built ``SpatialQA`` to use instead of loading one from ``model_path`` (for
            composition with other nodes in one process); it is then not closed by this node.
        **kwargs: passed to ``rclpy.lifecycle.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = NODE_NAME, *, engine: Any | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._shared_engine = engine
        self._engine: Any | None = None
        self._buffer: FrameBuffer | None = None
        self._state_label = "unconfigured"
        self._configure_error = ""
        self._lock = threading.Lock()
        self._pending = 0
        self._jobs: list[_Question] = []
        self._jobs_ready = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._stop_worker = False
        self._query_counter = itertools.count(1)
        self._counts: Counter = Counter()
        self._counts_lock = threading.Lock()
        self._pose_sources: dict[str, str] = {}
        self._last_error: dict[str, str] = {}
        self._last_latency: dict[str, float] = {}
        self._active_subscriptions: list = []
        self._answer_pub = None
        self._selection_pub = None
        self._diagnostics_pub = None
        self._diagnostics_timer = None
        self._tf_buffer = None
        self._tf_listener = None
        self._service_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._camera_groups: dict[str, MutuallyExclusiveCallbackGroup] = {}
        self._guard_change_state_service()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self._declare_parameters()
        self.cameras: list[str] = list(self.get_parameter("cameras").value)
        self.executor_threads = int(self.get_parameter("queue_size").value)
        self._ask_service = self.create_service(
            AskSpatial, "~/ask", self._on_ask, callback_group=self._service_group
        )

    @property
    def frame_buffer(self) -> FrameBuffer | None:
        """The node's frame buffer between configure and cleanup (None otherwise); thread-safe to read."""
        return self._buffer

    @property
    def lifecycle_state(self) -> str:
        """"unconfigured", "inactive", "active" or "finalized"."""
        return self._state_label

    def _guard_change_state_service(self) -> None:
        """Answer ``success: false`` to a transition that is invalid in the current state.

        rclpy's lifecycle ``change_state`` service raises inside its callback for such a request (e.g.
        activate while unconfigured), so the caller never gets a response; this wraps that callback.
        """
        for service in self.services:
            if service.srv_name.endswith("/change_state"):
                original = service.callback

                def guarded(request, response, original=original):
                    try:
                        return original(request, response)
                    except Exception as error:  # rclpy's RCLError: transition not registered
                        self.get_logger().warning(f"refused lifecycle transition {request.transition.id} "
                                                  f"{request.transition.label!r}: {error}")
                        response.success = False
                        return response

                service.callback = guarded

    # ------------------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        d = parameter_descriptor
        self._declare(
            "",
            [
                (
                    "model_path",
                    "",
                    d(
                        "Spatial-MLLM checkpoint directory; empty = no model (every question is "
                        "answered with the rejection 'no model loaded').",
                        read_only=True,
                    ),
                ),
                ("backend", "torch", d("Inference backend.", read_only=True, choices=BACKENDS)),
                ("llm_backend", "torch", d("Language-model backend (onnxruntime/tensorrt: exported graph, "
                                           "KV cache).", read_only=True, choices=BACKENDS)),
                ("llm_quantization", "none", d("Weight-only LLM quantisation (llm_backend onnxruntime, "
                                               "MatMulNBits).", read_only=True, choices=LLM_QUANTIZATIONS)),
                ("llm_quant_block_size", 32, d("Weights per quantisation scale (power of 2).", read_only=True,
                                               integer_range=(16, 256))),
                ("llm_quant_symmetric", True, d("Symmetric quantisation (no zero points).", read_only=True)),
                ("llm_quant_accuracy_level", 4, d("MatMulNBits compute type: 0 unset, 1 fp32, 2 fp16, "
                                                  "3 bf16, 4 int8.", read_only=True, integer_range=(0, 4))),
                ("device", "cpu", d("Torch device (cpu, cuda, cuda:0).", read_only=True)),
                ("dtype", "float32", d("Model weights/activations dtype.", read_only=True, choices=DTYPES)),
                (
                    "selector",
                    "space_aware",
                    d(
                        "Frame selector (space_aware falls back to uniform without depth/pose/intrinsics).",
                        read_only=True,
                        choices=SELECTORS,
                    ),
                ),
                (
                    "max_frames",
                    16,
                    d(
                        "Default number of frames shown to the model per question.",
                        integer_range=(1, MAX_FRAMES_LIMIT),
                    ),
                ),
                (
                    "max_new_tokens",
                    16,
                    d("Longest generated answer in tokens.", read_only=True, integer_range=(1, 1024)),
                ),
                (
                    "max_pixels",
                    768 * 28 * 28,
                    d(
                        "Pixel budget per frame for the model's resize (upstream 768*28*28); lower is "
                        "faster.",
                        read_only=True,
                        integer_range=(28 * 28, 4096 * 28 * 28),
                    ),
                ),
                (
                    "min_pixels",
                    0,
                    d(
                        "Smallest pixel count per frame after the model's resize; 0 = the model's default "
                        "(128*28*28 for video).",
                        read_only=True,
                        integer_range=(0, 4096 * 28 * 28),
                    ),
                ),
                (
                    "feature_cache_megabytes",
                    256.0,
                    d(
                        "Bound of the visual-feature cache (repeated questions on the same frames skip "
                        "encoding); 0 disables it.",
                        read_only=True,
                        float_range=(0.0, 65536.0),
                    ),
                ),
                (
                    "warmup",
                    True,
                    d("Run one dummy question at configure so the first real one is fast.", read_only=True),
                ),
                (
                    "autostart",
                    False,
                    d(
                        "Configure and activate by itself at start (without a lifecycle manager "
                        "or launch events).",
                        read_only=True,
                    ),
                ),
                (
                    "queue_size",
                    2,
                    d(
                        "Questions accepted and not yet answered (the running one included); "
                        "more are rejected at once as busy.",
                        read_only=True,
                        integer_range=(1, 64),
                    ),
                ),
                (
                    "request_timeout_s",
                    120.0,
                    d(
                        "How long ~/ask waits for its answer before replying with a timeout rejection.",
                        float_range=(0.1, 3600.0),
                    ),
                ),
                (
                    "diagnostics_period_s",
                    1.0,
                    d("Period of the /diagnostics status.", read_only=True, float_range=(0.05, 60.0)),
                ),
                (
                    "buffer.max_frames",
                    300,
                    d(
                        "Frames kept per camera (RGB and depth rings).",
                        read_only=True,
                        integer_range=(1, 100000),
                    ),
                ),
                (
                    "buffer.max_megabytes",
                    1024.0,
                    d(
                        "Image memory bound of the buffer (all cameras).",
                        read_only=True,
                        float_range=(1.0, 1.0e6),
                    ),
                ),
                (
                    "buffer.depth_tolerance_s",
                    0.02,
                    d(
                        "Largest RGB/depth stamp difference paired together.",
                        read_only=True,
                        float_range=(0.0, 10.0),
                    ),
                ),
                (
                    "buffer.pose_tolerance_s",
                    0.05,
                    d(
                        "Largest distance to a pose sample used without interpolation.",
                        read_only=True,
                        float_range=(0.0, 10.0),
                    ),
                ),
                (
                    "buffer.max_pose_gap_s",
                    0.5,
                    d("Longest pose gap interpolated across.", read_only=True, float_range=(0.0, 60.0)),
                ),
                (
                    "buffer.reset_jump_s",
                    1.0,
                    d(
                        "A stamp this far behind the newest means the clock was reset "
                        "(bag loop): the buffer is cleared.",
                        read_only=True,
                        float_range=(0.001, 1.0e6),
                    ),
                ),
                (
                    "qos.images.reliability",
                    "best_effort",
                    d(
                        "Reliability of camera subscriptions (sensor data QoS by default).",
                        read_only=True,
                        choices=RELIABILITIES,
                    ),
                ),
                (
                    "qos.images.depth",
                    5,
                    d("History depth of camera subscriptions.", read_only=True, integer_range=(1, 1000)),
                ),
                ("tf.target_frame", "map", d("World frame for camera poses from tf2.", read_only=True)),
                (
                    "tf.timeout_s",
                    0.0,
                    d(
                        "How long a tf2 lookup may wait (0 = only what is buffered).",
                        read_only=True,
                        float_range=(0.0, 1.0),
                    ),
                ),
                (
                    "cameras",
                    ["camera"],
                    d(
                        "Camera names; each has the parameters <name>.namespace, "
                        "<name>.image_topic, ... below.",
                        read_only=True,
                    ),
                ),
            ],
        )
        for camera in self.get_parameter("cameras").value:
            self._declare_camera_parameters(camera)

    def _declare(self, namespace: str, entries: list[tuple[str, Any, ParameterDescriptor]]) -> None:
        """declare_parameters, accepting integers from parameter files for floating-point parameters.

        ``max_megabytes: 512`` in a YAML file (or ``-p x:=8``) is an INTEGER override, which rclpy
        refuses for a DOUBLE parameter, ending the process; such values are converted instead.
        """
        overrides = getattr(self, "_parameter_overrides", None)
        if overrides:
            for name, default, _ in entries:
                full_name = f"{namespace}.{name}" if namespace else name
                override = overrides.get(full_name)
                if override is None:
                    continue
                if isinstance(default, float) and override.type_ == Parameter.Type.INTEGER:
                    overrides[full_name] = Parameter(full_name, Parameter.Type.DOUBLE, float(override.value))
                elif (isinstance(default, list) and default and isinstance(default[0], float)
                      and override.type_ == Parameter.Type.INTEGER_ARRAY):
                    overrides[full_name] = Parameter(full_name, Parameter.Type.DOUBLE_ARRAY,
                                                     [float(v) for v in override.value])
        self.declare_parameters(namespace, entries)

    def _declare_camera_parameters(self, camera: str) -> None:
        d = parameter_descriptor
        self._declare(
            camera,
            [
                (
                    "namespace",
                    camera,
                    d("Namespace of the camera's topics (default: the camera name).", read_only=True),
                ),
                (
                    "image_topic",
                    "",
                    d(
                        "Colour image topic; empty = <namespace>/color/image_raw (plus "
                        "/compressed for the compressed transport).",
                        read_only=True,
                    ),
                ),
                (
                    "image_transport",
                    "raw",
                    d("sensor_msgs/Image or CompressedImage.", read_only=True, choices=IMAGE_TRANSPORTS),
                ),
                (
                    "use_depth",
                    True,
                    d(
                        "Subscribe to a depth image (16UC1 mm or 32FC1 m, registered to colour).",
                        read_only=True,
                    ),
                ),
                ("depth_topic", "", d("Depth topic; empty = <namespace>/depth/image_raw.", read_only=True)),
                (
                    "camera_info_topic",
                    "",
                    d("CameraInfo topic; empty = <namespace>/color/camera_info.", read_only=True),
                ),
                (
                    "pose_source",
                    "pose_stamped",
                    d("Where camera poses come from.", read_only=True, choices=POSE_SOURCES),
                ),
                (
                    "pose_topic",
                    "",
                    d(
                        "PoseStamped/Odometry topic; empty = <namespace>/pose (pose_stamped) or "
                        "odom (odometry).",
                        read_only=True,
                    ),
                ),
                (
                    "pose_offset",
                    list(IDENTITY_OFFSET),
                    d(
                        "Transform [x, y, z, qx, qy, qz, qw] from the pose's frame to the camera optical "
                        "frame (OpenCV axes), applied on the right: world_T_camera = world_T_pose * offset. "
                        "Identity when the pose is the optical frame's; base_link -> camera_optical "
                        "extrinsics for odometry.",
                        read_only=True,
                    ),
                ),
                (
                    "camera_frame",
                    "",
                    d("Optical frame for tf2 lookups; empty = the image header frame_id.", read_only=True),
                ),
            ],
        )

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse values outside the allowed sets (ranges and read-only are enforced by the descriptors)."""
        cameras = set(self.get_parameter("cameras").value) if self.has_parameter("cameras") else set()
        for parameter in parameters:
            name, value = parameter.name, parameter.value
            prefix, _, leaf = name.rpartition(".")
            allowed = CHOICES.get(name) or (CAMERA_CHOICES.get(leaf) if prefix in cameras else None)
            if allowed is not None and value not in allowed:
                return SetParametersResult(
                    successful=False, reason=f"{name}={value!r} is not one of {', '.join(allowed)}"
                )
            if name == "cameras":
                names = list(value)
                reserved = sorted({n for n in names if n in RESERVED_CAMERA_NAMES})
                if not names or len(set(names)) != len(names) or not all(n and "." not in n for n in names):
                    return SetParametersResult(
                        successful=False,
                        reason=(f"cameras must be distinct non-empty names without dots, got {names}"),
                    )
                if reserved:
                    return SetParametersResult(
                        successful=False, reason=f"camera names {reserved} clash with parameter groups"
                    )
            if prefix in cameras and leaf == "pose_offset":
                offset = np.asarray(value, dtype=np.float64)
                if (
                    offset.shape != (7,)
                    or not np.all(np.isfinite(offset))
                    or np.linalg.norm(offset[3:]) < 1e-6
                ):
                    return SetParametersResult(
                        successful=False,
                        reason=(
                            f"{name} must be 7 finite numbers [x, y, z, qx, qy, qz, qw] "
                            "with a non-zero quaternion"
                        ),
                    )
        return SetParametersResult(successful=True)

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Configure and activate by itself when ``autostart`` is set (called by :func:`run`)."""
        if self._param("autostart") and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Build the buffer, load and warm up the engine, create publishers and the worker."""
        started = time.perf_counter()
        try:
            self._buffer = FrameBuffer(
                max_frames=self._param("buffer.max_frames"),
                max_bytes=int(self._param("buffer.max_megabytes") * 1024 * 1024),
                depth_tolerance=self._param("buffer.depth_tolerance_s"),
                pose_tolerance=self._param("buffer.pose_tolerance_s"),
                max_pose_gap=self._param("buffer.max_pose_gap_s"),
                reset_jump=self._param("buffer.reset_jump_s"),
            )
            self._engine = self._shared_engine if self._shared_engine is not None else self._load_engine()
            if self._param("warmup") and self._shared_engine is None:
                self._engine.warmup()
        except Exception as error:  # a bad model path or backend must not kill the node
            self._configure_error = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self._release_engine()
            self._buffer = None
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self._answer_pub = self.create_lifecycle_publisher(
            SpatialAnswer, "~/answer", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self._selection_pub = self.create_lifecycle_publisher(FrameSelection, "~/selected_frames", 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Steady clock: diagnostics keep coming when sim time (use_sim_time, bag replay) is paused.
        self._diagnostics_timer = self.create_timer(
            self._param("diagnostics_period_s"),
            self._publish_diagnostics,
            callback_group=self._timer_group,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self._stop_worker = False
        self._worker = threading.Thread(target=self._work, name="spatial_mllm_worker", daemon=True)
        self._worker.start()
        self._state_label = "inactive"
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.2f} s: model {self._model_id() or '(none)'}, "
            f"backend {self._backend_name()}, cameras {self.cameras}"
        )
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Subscribe to the cameras and to ``~/question``; activate the publishers."""
        try:
            for camera in self.cameras:
                self._subscribe_camera(camera)
        except Exception as error:
            self.get_logger().error(f"activate failed: {type(error).__name__}: {error}")
            self._unsubscribe()
            return TransitionCallbackReturn.FAILURE
        self._active_subscriptions.append(
            self.create_subscription(
                String,
                "~/question",
                self._on_question_topic,
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
                callback_group=self._service_group,
            )
        )
        self._state_label = "active"
        self.get_logger().info("active: listening to cameras and questions")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        """Unsubscribe (questions already accepted are still answered)."""
        self._unsubscribe()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        """Stop the worker, free the model and the buffer, remove publishers."""
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
        """Free the worker and the model at process exit (called by :func:`run`)."""
        self._unsubscribe()
        self._teardown()

    def _load_engine(self) -> Any:
        from spatial_mllm_ros.engine import SpatialQA

        model_path = self._param("model_path") or None
        return SpatialQA(
            model_path,
            backend=self._param("backend"),
            device=self._param("device"),
            dtype=self._param("dtype"),
            selector=self._param("selector"),
            max_frames=self._param("max_frames"),
            max_new_tokens=self._param("max_new_tokens"),
            cache_bytes=int(self._param("feature_cache_megabytes") * 1024 * 1024),
            max_pixels=self._param("max_pixels"),
            min_pixels=self._param("min_pixels") or None,
            llm_backend=self._param("llm_backend"),
            llm_options={"quantization": self._param("llm_quantization"),
                         "block_size": self._param("llm_quant_block_size"),
                         "symmetric": self._param("llm_quant_symmetric"),
                         "accuracy_level": self._param("llm_quant_accuracy_level")},
        )

    def _release_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and engine is not self._shared_engine:
            engine.close()

    def _teardown(self) -> None:
        self._stop_worker_thread()
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        for attribute in ("_answer_pub", "_selection_pub"):
            publisher = getattr(self, attribute)
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
                setattr(self, attribute, None)
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
            self._diagnostics_pub = None
        self._release_engine()
        self._buffer = None

    def _stop_worker_thread(self) -> None:
        with self._lock:
            self._stop_worker = True
            leftovers, self._jobs = self._jobs, []
            self._jobs_ready.notify_all()
        for job in leftovers:
            self._finish(job, self._rejection(job, "node is shutting down: question not answered"))
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    # ------------------------------------------------------------------------------ cameras
    def _camera_qos(self) -> QoSProfile:
        reliability = (
            ReliabilityPolicy.RELIABLE
            if self._param("qos.images.reliability") == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self._param("qos.images.depth"),
            reliability=reliability,
            durability=qos_profile_sensor_data.durability,
        )

    def _subscribe_camera(self, camera: str) -> None:
        def p(leaf: str) -> Any:
            return self._param(f"{camera}.{leaf}")

        namespace = p("namespace").rstrip("/")
        qos = self._camera_qos()
        group = self._camera_groups.setdefault(camera, MutuallyExclusiveCallbackGroup())
        compressed = p("image_transport") == "compressed"
        image_topic = p("image_topic") or f"{namespace}/color/image_raw" + (
            "/compressed" if compressed else ""
        )
        subscribe = self._active_subscriptions.append
        subscribe(
            self.create_subscription(
                CompressedImage if compressed else Image,
                image_topic,
                lambda msg: self._on_image(camera, msg, compressed),
                qos,
                callback_group=group,
            )
        )
        if p("use_depth"):
            subscribe(
                self.create_subscription(
                    Image,
                    p("depth_topic") or f"{namespace}/depth/image_raw",
                    lambda msg: self._on_depth(camera, msg),
                    qos,
                    callback_group=group,
                )
            )
        subscribe(
            self.create_subscription(
                CameraInfo,
                p("camera_info_topic") or f"{namespace}/color/camera_info",
                lambda msg: self._on_camera_info(camera, msg),
                qos,
                callback_group=group,
            )
        )
        offset = np.asarray(p("pose_offset"), dtype=np.float64)
        offset_matrix = np.eye(4)
        offset_matrix[:3, :3] = conv.quaternion_to_matrix(*offset[3:])
        offset_matrix[:3, 3] = offset[:3]
        source = p("pose_source")
        if source == "pose_stamped":
            subscribe(
                self.create_subscription(
                    PoseStamped,
                    p("pose_topic") or f"{namespace}/pose",
                    lambda msg: self._on_pose(camera, msg.header.stamp, msg.pose, offset_matrix),
                    qos,
                    callback_group=group,
                )
            )
        elif source == "odometry":
            subscribe(
                self.create_subscription(
                    Odometry,
                    p("pose_topic") or "odom",
                    lambda msg: self._on_pose(camera, msg.header.stamp, msg.pose.pose, offset_matrix),
                    qos,
                    callback_group=group,
                )
            )
        elif source == "tf":
            if tf2_ros is None:
                raise RuntimeError(
                    f"camera {camera!r}: pose_source 'tf' needs tf2_ros, which is not installed "
                    "here; use pose_stamped or odometry"
                )
            if self._tf_buffer is None:
                self._tf_buffer = tf2_ros.Buffer()
                self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self, spin_thread=False)
        self._pose_sources[camera] = source

    def _unsubscribe(self) -> None:
        subscriptions, self._active_subscriptions = self._active_subscriptions, []
        for subscription in subscriptions:
            self.destroy_subscription(subscription)
        self._tf_listener = None
        self._tf_buffer = None

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] += 1

    def _reject_input(self, kind: str, camera: str, error: Exception) -> None:
        self._count(f"malformed_{kind}")
        self._count(f"malformed_{kind}_{getattr(error, 'reason', 'invalid')}")
        self._last_error[f"malformed_{kind}"] = f"{camera}: {error}"
        self.get_logger().warning(
            f"dropped malformed {kind} from {camera}: {error}", throttle_duration_sec=5.0
        )

    def _on_image(self, camera: str, msg: Image | CompressedImage, compressed: bool) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        try:
            rgb = conv.compressed_to_rgb(msg) if compressed else conv.image_to_rgb(msg)
        except ValueError as error:
            self._reject_input("image", camera, error)
            return
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if buffer.add_image(camera, stamp, rgb, msg.header.frame_id) == ACCEPTED:
            self._count(f"images_{camera}")
            if self._pose_sources.get(camera) == "tf":
                self._lookup_tf_pose(camera, msg.header.frame_id, msg.header.stamp)

    def _on_depth(self, camera: str, msg: Image) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        try:
            depth, scale = conv.depth_to_array(msg)
        except ValueError as error:
            self._reject_input("depth", camera, error)
            return
        buffer.add_depth(camera, conv.stamp_to_sec(msg.header.stamp), depth, scale)

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        try:
            k = conv.camera_info_to_k(msg)
        except ValueError as error:
            self._reject_input("camera_info", camera, error)
            return
        buffer.set_intrinsics(camera, k)

    def _on_pose(self, camera: str, stamp, pose, offset: np.ndarray) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        try:
            matrix = conv.pose_to_matrix(pose) @ offset
        except ValueError as error:
            self._reject_input("pose", camera, error)
            return
        buffer.add_pose(conv.stamp_to_sec(stamp), matrix, camera_id=camera)

    def _lookup_tf_pose(self, camera: str, header_frame: str, stamp) -> None:
        from rclpy.duration import Duration
        from rclpy.time import Time as RclpyTime

        source = self._param(f"{camera}.camera_frame") or header_frame
        try:
            transform = self._tf_buffer.lookup_transform(
                self._param("tf.target_frame"),
                source,
                RclpyTime.from_msg(stamp),
                timeout=Duration(seconds=self._param("tf.timeout_s")),
            )
        except Exception as error:  # tf2 raises several exception types; none may stop the node
            self._count("tf_unavailable")
            self._last_error["tf_unavailable"] = f"{camera}: {error}"
            return
        t, q = transform.transform.translation, transform.transform.rotation
        matrix = np.eye(4)
        matrix[:3, :3] = conv.quaternion_to_matrix(q.x, q.y, q.z, q.w)
        matrix[:3, 3] = (t.x, t.y, t.z)
        self._buffer.add_pose(conv.stamp_to_sec(stamp), matrix, camera_id=camera)

    # ------------------------------------------------------------------------------ questions
    def _on_ask(self, request: AskSpatial.Request, response: AskSpatial.Response) -> AskSpatial.Response:
        start, end = conv.stamp_to_sec(request.window_start), conv.stamp_to_sec(request.window_end)
        job_or_rejection = self._accept(
            request.question,
            list(request.options),
            request.task_type,
            start if start > 0 else None,
            end if end > 0 else None,
            int(request.max_frames),
            request.query_id,
        )
        if isinstance(job_or_rejection, SpatialAnswer):
            response.answer = job_or_rejection
            return response
        job = job_or_rejection
        timeout = self._param("request_timeout_s")
        try:
            response.answer = job.future.result(timeout=timeout)
        except FutureTimeout:
            self._count("timed_out")
            response.answer = self._rejection(
                job,
                f"timeout: no answer within request_timeout_s={timeout:g} s "
                "(the question is still being answered)",
            )
        return response

    def _on_question_topic(self, msg: String) -> None:
        text = msg.data.strip()
        question, options, task_type, query_id, max_frames = text, [], "", "", 0
        if text.startswith("{"):
            try:
                fields = json.loads(text)
                question = str(fields["question"])
                options = [str(o) for o in fields.get("options", [])]
                task_type = str(fields.get("task_type", ""))
                query_id = str(fields.get("query_id", ""))
                max_frames = int(fields.get("max_frames", 0))
            except (ValueError, KeyError, TypeError) as error:
                self._publish_answer(
                    conv.rejection_msg(f"invalid question JSON: {error}", question=text, stamp=self._now())
                )
                return
        job_or_rejection = self._accept(question, options, task_type, None, None, max_frames, query_id)
        if isinstance(job_or_rejection, SpatialAnswer):
            self._publish_answer(job_or_rejection)

    def _accept(
        self,
        question: str,
        options: list[str],
        task_type: str,
        start: float | None,
        end: float | None,
        max_frames: int,
        query_id: str,
    ) -> _Question | SpatialAnswer:
        """Queue a question, or return the rejection to answer at once (inactive, empty, busy)."""
        query_id = query_id or f"{self.get_name()}-{next(self._query_counter)}"
        job = _Question(
            question=question,
            options=options,
            task_type=task_type,
            start=start,
            end=end,
            max_frames=max_frames or self._param("max_frames"),
            query_id=query_id,
        )
        reason = ""
        if self._state_label != "active":
            reason = f"node is {self._state_label}: questions are answered only when it is active"
            if self._configure_error:
                reason += f" (last configure failed: {self._configure_error})"
        elif not question.strip():
            reason = "empty question"
        elif start is not None and end is not None and end < start:
            reason = f"time window ends ({end:.3f}) before it starts ({start:.3f})"
        elif not 0 <= max_frames <= MAX_FRAMES_LIMIT:
            reason = f"max_frames {max_frames} is outside 0..{MAX_FRAMES_LIMIT} (0 = the node's default)"
        if reason:
            self._count("rejected_invalid" if self._state_label == "active" else "rejected_inactive")
            return self._rejection(job, reason)
        with self._lock:
            if self._pending >= self._param("queue_size"):
                self._count("rejected_busy")
                return self._rejection(
                    job,
                    f"busy: {self._pending} question(s) pending "
                    f"(queue_size={self._param('queue_size')}); ask again later",
                )
            self._pending += 1
            self._jobs.append(job)
            self._jobs_ready.notify()
        return job

    def _rejection(self, job: _Question, reason: str) -> SpatialAnswer:
        msg = conv.rejection_msg(
            reason, question=job.question, query_id=job.query_id, stamp=self._now(), task_type=job.task_type
        )
        msg.model_id, msg.backend = self._model_id(), self._backend_name()
        return msg

    def _work(self) -> None:
        """Worker thread: answer queued questions one at a time."""
        while True:
            with self._lock:
                while not self._jobs and not self._stop_worker:
                    self._jobs_ready.wait()
                if self._stop_worker:
                    return
                job = self._jobs.pop(0)
            try:
                msg = self._answer(job)
            except Exception as error:  # the engine promises not to raise; never let the worker die
                self.get_logger().error(f"question {job.query_id} failed: {type(error).__name__}: {error}")
                msg = self._rejection(job, f"internal error: {type(error).__name__}: {error}")
            self._finish(job, msg)

    def _answer(self, job: _Question) -> SpatialAnswer:
        engine, buffer = self._engine, self._buffer
        if engine is None or buffer is None:
            return self._rejection(job, "node is not configured")
        frames = buffer.frames(start=job.start, end=job.end)
        if not frames and getattr(engine, "model_loaded", True):
            self._count("rejected_no_frames")
            window = "" if job.start is None and job.end is None else f" in the window {job.start}..{job.end}"
            return self._rejection(
                job,
                f"no camera frames buffered{window} ({len(buffer)} in the buffer); "
                f"check the camera topics of {self.cameras}",
            )
        answer = engine.ask(
            frames, job.question, job.options or None, job.task_type or None, job.max_frames, job.query_id
        )
        frame_id = frames[-1].frame_id if frames else ""
        msg = conv.answer_to_msg(answer, stamp=self._now(), frame_id=frame_id)
        self._last_latency.update(
            selection_ms=answer.selection_ms,
            encode_ms=answer.encode_ms,
            generate_ms=answer.generate_ms,
            total_ms=(time.monotonic() - job.accepted_at) * 1e3,
        )
        self._count("answered" if not answer.error else "failed")
        if answer.error:
            self._last_error["failed"] = answer.error
        selection_pub = self._selection_pub
        if answer.selection is not None and selection_pub is not None and selection_pub.is_activated:
            selection_pub.publish(
                conv.selection_to_msg(
                    answer.selection, answer.frame_stamps, stamp=self._now(), frame_id=frame_id
                )
            )
        return msg

    def _finish(self, job: _Question, msg: SpatialAnswer) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
        if not job.future.done():
            job.future.set_result(msg)
        self._publish_answer(msg)

    def _publish_answer(self, msg: SpatialAnswer) -> None:
        publisher = self._answer_pub
        if publisher is not None and publisher.is_activated:
            publisher.publish(msg)

    # ------------------------------------------------------------------------------ diagnostics
    def _now(self):
        return self.get_clock().now().to_msg()

    def _model_id(self) -> str:
        engine = self._engine
        if engine is None:
            return ""
        return str(getattr(engine, "model_id", "") or "")

    def _backend_name(self) -> str:
        engine = self._engine
        return str(getattr(engine, "backend_name", "") or self._param("backend"))

    def diagnostics_values(self) -> dict[str, str]:
        """The key/values of the /diagnostics status (also useful in tests and benchmarks)."""
        buffer = self._buffer
        values: dict[str, Any] = {
            "state": self._state_label,
            "model_id": self._model_id(),
            "backend": self._backend_name(),
            "model_loaded": bool(getattr(self._engine, "model_loaded", False)),
        }
        if buffer is not None:
            counters = buffer.counters
            values["buffer_frames"] = len(buffer)
            values["buffer_capacity_frames"] = buffer.max_frames * max(1, len(self.cameras))
            values["buffer_fill"] = round(len(buffer) / values["buffer_capacity_frames"], 4)
            values["buffer_bytes"] = buffer.nbytes
            values["buffer_fill_bytes"] = round(buffer.nbytes / buffer.max_bytes, 4)
            for key, count in counters.items():
                if key.startswith(("dropped_", "evicted_", "received_", "resets")):
                    values[key] = count
        with self._lock:
            values["queue_depth"] = self._pending
        values["queue_size"] = self._param("queue_size")
        with self._counts_lock:
            counts = dict(self._counts)
        values.update(sorted(counts.items()))
        for key, latency in self._last_latency.items():
            values[f"last_{key}"] = round(latency, 2)
        for key, text in self._last_error.items():
            values[f"last_error_{key}"] = text
        return {key: str(value) for key, value in values.items()}

    def _publish_diagnostics(self) -> None:
        publisher = self._diagnostics_pub
        if publisher is None:
            return
        values = self.diagnostics_values()
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: spatial QA",
            hardware_id=values["model_id"] or "no-model",
        )
        malformed = sum(int(values.get(f"malformed_{kind}", "0")) for kind in INPUT_KINDS)
        if self._state_label != "active":
            status.level, status.message = DiagnosticStatus.WARN, f"node is {self._state_label}"
        elif values["model_loaded"] != "True":
            status.level, status.message = DiagnosticStatus.WARN, "no model loaded"
        elif malformed:
            status.level, status.message = (
                DiagnosticStatus.WARN,
                f"{malformed} malformed camera message(s) dropped",
            )
        else:
            status.level, status.message = DiagnosticStatus.OK, "answering"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._now()
        publisher.publish(array)


def main(args: list[str] | None = None) -> int:
    """``spatial_mllm_node`` entry point (``ros2 run spatial_mllm_ros spatial_mllm_node --ros-args ...``)."""
    return run([SpatialQANode], args)


if __name__ == "__main__":
    raise SystemExit(main())
