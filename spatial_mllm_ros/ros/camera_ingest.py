# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""One camera ingest for every node: camera subscriptions -> checked frames in a ``FrameBuffer``.

Both the QA node and the reward node declare the same per-camera parameters (:func:`camera_specs`) and
hand them to a :class:`CameraIngest`, which on activation subscribes to each camera's colour image (raw
or compressed), depth, camera info and pose source, and on deactivation removes all of it again.

Every message is accounted for: ``messages_<kind>`` counts what reached a callback, and each one ends as
exactly one of: ``malformed_<kind>`` (+ ``_<reason>``: undecodable, too many pixels, depth not matching
the colour image, K not matching the colour size, ...), handed to the buffer (whose own counters say
accepted or dropped and why), or ``callback_error_<kind>`` (a bug, counted by the boundary).

Poses: ``pose_stamped``/``odometry`` samples go into the buffer's pose track (interpolated at the frame
stamps when a question is answered); ``tf`` poses are resolved when a question is answered, from the
frame's ``header.frame_id`` and stamp (:mod:`spatial_mllm_ros.ros.tf_poses`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from spatial_mllm_ros.core.buffer import ACCEPTED, FrameBuffer
from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros.boundary import Boundary, Counters, clip
from spatial_mllm_ros.ros.parameters import Spec, value
from spatial_mllm_ros.ros.tf_poses import TfPoses

POSE_SOURCES = ("pose_stamped", "odometry", "tf", "none")
IMAGE_TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
IDENTITY_OFFSET = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
INPUT_KINDS = ("image", "depth", "camera_info", "pose")
# Largest K principal-point offset outside the image that is still believed (pixels).
PRINCIPAL_POINT_MARGIN = 0.5


def _offset_problem(offset: Any) -> str:
    try:
        conv.offset_to_matrix(offset)
    except (ValueError, TypeError) as error:
        return (
            f"pose_offset must be 7 finite numbers [x, y, z, qx, qy, qz, qw] with a unit quaternion: {error}"
        )
    return ""


def camera_specs(camera: str, namespace: str | None = None) -> list[Spec]:
    """The parameters of one camera (declared as ``<camera>.<name>``)."""
    return [
        Spec(
            "namespace", namespace or camera, "Namespace of the camera's topics (default: the camera name)."
        ),
        Spec(
            "image_topic",
            "",
            "Colour image topic; empty = <namespace>/color/image_raw (plus /compressed for "
            "the compressed transport).",
        ),
        Spec(
            "image_transport",
            "raw",
            "sensor_msgs/Image or CompressedImage (JPEG/PNG).",
            choices=IMAGE_TRANSPORTS,
        ),
        Spec(
            "use_depth",
            True,
            "Subscribe to a depth image registered to colour (16UC1 mm or 32FC1 m); its "
            "size must equal the colour image's.",
        ),
        Spec(
            "depth_topic",
            "",
            "Depth topic; empty = <namespace>/aligned_depth_to_color/image_raw (the "
            "depth registered to colour; a raw depth stream has another size and K).",
        ),
        Spec(
            "camera_info_topic",
            "",
            "CameraInfo topic of the colour image; empty = <namespace>/color/camera_info.",
        ),
        Spec(
            "pose_source",
            "pose_stamped",
            "Where camera poses come from (tf: looked up when a question is answered).",
            choices=POSE_SOURCES,
        ),
        Spec(
            "pose_topic",
            "",
            "PoseStamped/Odometry topic; empty = <namespace>/pose (pose_stamped) or odom (odometry).",
        ),
        Spec(
            "pose_offset",
            list(IDENTITY_OFFSET),
            "Transform [x, y, z, qx, qy, qz, qw] from the pose's frame to the camera optical frame (OpenCV "
            "axes), applied on the right: world_T_camera = world_T_pose * offset.",
            check=_offset_problem,
        ),
        Spec("camera_frame", "", "Optical frame for tf lookups; empty = the image header frame_id."),
    ]


def ingest_specs(max_image_pixels: int) -> list[Spec]:
    """Parameters of the ingest shared by all cameras of a node (QoS, pixel cap, tf)."""
    return [
        Spec(
            "image.max_pixels",
            max_image_pixels,
            "Largest image (width*height) decoded; larger ones are "
            "refused from their header, before decoding.",
            value_range=(1, 1 << 28),
        ),
        Spec(
            "qos.images.reliability",
            "best_effort",
            "Reliability of camera subscriptions (sensor data QoS by "
            "default); qos_overrides./<topic>.subscription.* parameters override it per topic.",
            choices=RELIABILITIES,
        ),
        Spec("qos.images.depth", 5, "History depth of camera subscriptions.", value_range=(1, 1000)),
        Spec("tf.target_frame", "map", "Fixed frame the tf poses are expressed in."),
        Spec(
            "tf.timeout_s",
            0.2,
            "How long one tf lookup may wait for a late transform when a question is answered.",
            value_range=(0.0, 10.0),
        ),
    ]


@dataclass(frozen=True)
class CameraTopics:
    """Resolved topics and pose settings of one camera."""

    name: str
    image_topic: str
    compressed: bool
    depth_topic: str
    camera_info_topic: str
    pose_source: str
    pose_topic: str
    pose_offset: np.ndarray
    camera_frame: str

    @classmethod
    def from_parameters(cls, node: Node, camera: str) -> CameraTopics:
        """The topics of ``camera`` from its ``<camera>.*`` parameters (empty ones defaulted)."""
        def p(leaf: str) -> Any:
            return value(node, f"{camera}.{leaf}")

        namespace = p("namespace").rstrip("/")
        compressed = p("image_transport") == "compressed"
        default_image = f"{namespace}/color/image_raw" + ("/compressed" if compressed else "")
        source = p("pose_source")
        default_pose = f"{namespace}/pose" if source == "pose_stamped" else "odom"
        return cls(
            name=camera,
            image_topic=p("image_topic") or default_image,
            compressed=compressed,
            depth_topic=(p("depth_topic") or f"{namespace}/aligned_depth_to_color/image_raw")
            if p("use_depth")
            else "",
            camera_info_topic=p("camera_info_topic") or f"{namespace}/color/camera_info",
            pose_source=source,
            pose_topic=p("pose_topic") or default_pose,
            pose_offset=conv.offset_to_matrix(p("pose_offset")),
            camera_frame=p("camera_frame"),
        )


class _CameraState:
    """What the ingest remembers per camera to check one stream against another."""

    def __init__(self) -> None:
        self.color_size: tuple[int, int] | None = None  # (height, width) of the latest accepted image
        self.info_size: tuple[int, int] | None = None  # (height, width) CameraInfo declared


class CameraIngest:
    """Subscriptions of a node's cameras into its frame buffer (see the module docstring)."""

    def __init__(
        self, node: Node, buffer: FrameBuffer, counters: Counters, boundary: Boundary, cameras: list[str]
    ) -> None:
        self._node = node
        self._buffer = buffer
        self._counters = counters
        self._boundary = boundary
        self.cameras = list(cameras)
        self._topics = {camera: CameraTopics.from_parameters(node, camera) for camera in self.cameras}
        self._state = {camera: _CameraState() for camera in self.cameras}
        self._groups = {camera: MutuallyExclusiveCallbackGroup() for camera in self.cameras}
        self._subscriptions: list = []
        self._tf: TfPoses | None = None

    @property
    def topics(self) -> dict[str, CameraTopics]:
        """Resolved topics by camera name."""
        return dict(self._topics)

    @property
    def buffer(self) -> FrameBuffer:
        """The frame buffer the ingest fills."""
        return self._buffer

    @property
    def max_pixels(self) -> int:
        """The decoders' pixel cap (``image.max_pixels``)."""
        return int(value(self._node, "image.max_pixels"))

    def _qos(self) -> QoSProfile:
        reliable = value(self._node, "qos.images.reliability") == "reliable"
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=int(value(self._node, "qos.images.depth")),
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=qos_profile_sensor_data.durability,
        )

    # ------------------------------------------------------------------------------ lifecycle
    def activate(self) -> None:
        """Subscribe to every camera (and start one tf listener when a camera takes poses from tf)."""
        try:
            if any(t.pose_source == "tf" for t in self._topics.values()):
                self._tf = TfPoses(
                    self._node,
                    self._counters,
                    self._boundary,
                    value(self._node, "tf.target_frame"),
                    float(value(self._node, "tf.timeout_s")),
                )
            for camera in self.cameras:
                self._subscribe(self._topics[camera])
        except Exception:
            self.deactivate()
            raise

    def deactivate(self) -> None:
        """Destroy the subscriptions and the tf listener of this activation."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            self._node.destroy_subscription(subscription)
        tf, self._tf = self._tf, None
        if tf is not None:
            tf.close()

    def _subscribe(self, topics: CameraTopics) -> None:
        group, camera = self._groups[topics.name], topics.name
        overriding = QoSOverridingOptions.with_default_policies()

        def subscribe(msg_type: type, topic: str, kind: str, handler: Callable[[Any], None]) -> None:
            def on_message(msg: Any) -> None:
                self._counters.add(f"messages_{kind}")
                handler(msg)

            self._subscriptions.append(
                self._node.create_subscription(
                    msg_type,
                    topic,
                    self._boundary.guard(kind, on_message),
                    self._qos(),  # a fresh profile each: the per-topic overrides are applied to it in place
                    callback_group=group,
                    qos_overriding_options=overriding,
                )
            )

        subscribe(
            CompressedImage if topics.compressed else Image,
            topics.image_topic,
            "image",
            lambda msg: self._on_image(camera, msg, topics.compressed),
        )
        if topics.depth_topic:
            subscribe(Image, topics.depth_topic, "depth", lambda msg: self._on_depth(camera, msg))
        subscribe(
            CameraInfo, topics.camera_info_topic, "camera_info", lambda msg: self._on_camera_info(camera, msg)
        )
        if topics.pose_source == "pose_stamped":
            subscribe(
                PoseStamped,
                topics.pose_topic,
                "pose",
                lambda msg: self._on_pose(camera, msg.header.stamp, msg.pose, topics.pose_offset),
            )
        elif topics.pose_source == "odometry":
            subscribe(
                Odometry,
                topics.pose_topic,
                "pose",
                lambda msg: self._on_pose(camera, msg.header.stamp, msg.pose.pose, topics.pose_offset),
            )

    # ------------------------------------------------------------------------------ callbacks
    def _malformed(self, kind: str, camera: str, error: Exception) -> None:
        reason = getattr(error, "reason", "invalid")
        self._counters.add(f"malformed_{kind}")
        self._counters.add(f"malformed_{kind}_{reason}")
        self._counters.note_error(f"malformed_{kind}", f"{camera}: {error}")
        self._node.get_logger().warning(
            f"dropped malformed {kind} from {camera}: {clip(str(error))}", throttle_duration_sec=5.0
        )

    def _on_image(self, camera: str, msg: Image | CompressedImage, compressed: bool) -> None:
        try:
            stamp = conv.stamp_to_sec(msg.header.stamp)
            rgb = (
                conv.compressed_to_rgb(msg, self.max_pixels)
                if compressed
                else conv.image_to_rgb(msg, self.max_pixels)
            )
        except ValueError as error:
            self._malformed("image", camera, error)
            return
        if self._buffer.add_image(camera, stamp, rgb, msg.header.frame_id) == ACCEPTED:
            self._state[camera].color_size = rgb.shape[:2]

    def _on_depth(self, camera: str, msg: Image) -> None:
        try:
            depth, scale = conv.depth_to_array(msg, self.max_pixels)
            color = self._state[camera].color_size
            if color is not None and depth.shape != color:
                raise conv.MalformedMessageError(
                    "size_mismatch_color",
                    f"depth of {depth.shape[1]}x{depth.shape[0]} does not match the colour "
                    f"image's {color[1]}x{color[0]}: subscribe to depth registered to colour "
                    "(aligned_depth_to_color)",
                )
        except ValueError as error:
            self._malformed("depth", camera, error)
            return
        self._buffer.add_depth(camera, conv.stamp_to_sec(msg.header.stamp), depth, scale)

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        try:
            k = conv.camera_info_to_k(msg)
            height, width = int(msg.height), int(msg.width)
            if height > 0 and width > 0:
                cx, cy = k[0, 2], k[1, 2]
                margin = PRINCIPAL_POINT_MARGIN
                if not (-margin <= cx <= width + margin and -margin <= cy <= height + margin):
                    raise conv.MalformedMessageError(
                        "principal_point_outside",
                        f"K's principal point ({cx:g}, {cy:g}) lies outside the "
                        f"declared {width}x{height} image",
                    )
                self._check_against_color(camera, (height, width))
        except ValueError as error:
            self._malformed("camera_info", camera, error)
            return
        if self._buffer.set_intrinsics(camera, k) == ACCEPTED and height > 0 and width > 0:
            self._state[camera].info_size = (height, width)

    def _check_against_color(self, camera: str, info_size: tuple[int, int]) -> None:
        color = self._state[camera].color_size
        if color is not None and color != info_size:
            raise conv.MalformedMessageError(
                "size_mismatch_color",
                f"camera_info declares {info_size[1]}x{info_size[0]} but the colour "
                f"images are {color[1]}x{color[0]}: K belongs to another stream",
            )

    def _on_pose(self, camera: str, stamp: Any, pose: Any, offset: np.ndarray) -> None:
        try:
            matrix = conv.pose_to_matrix(pose) @ offset
        except ValueError as error:
            self._malformed("pose", camera, error)
            return
        self._buffer.add_pose(conv.stamp_to_sec(stamp), matrix, camera_id=camera)

    # ------------------------------------------------------------------------------ queries
    def camera_info_size(self, camera: str) -> tuple[int, int] | None:
        """(height, width) of the camera's accepted CameraInfo, or None before one arrived."""
        return self._state[camera].info_size

    def frames(
        self, start: float | None = None, end: float | None = None, camera: str | None = None
    ) -> list[Frame]:
        """Buffered frames in the window, with tf poses resolved now for cameras that take them from tf.

        The lookups share one deadline of ``tf.timeout_s``: a transform that arrives late (after the
        image) is still used, and a missing one costs the question that timeout once, not per frame.
        """
        frames = self._buffer.frames(camera_id=camera, start=start, end=end)
        tf = self._tf
        if tf is None:
            return frames
        wanted = [
            i
            for i, frame in enumerate(frames)
            if (topics := self._topics.get(frame.camera_id)) is not None and topics.pose_source == "tf"
        ]
        queries = [
            (self._topics[frames[i].camera_id].camera_frame or frames[i].frame_id, frames[i].stamp)
            for i in wanted
        ]
        for i, pose in zip(wanted, tf.poses(queries), strict=True):
            if pose is not None:
                frames[i] = replace(frames[i], pose=pose)
        return frames
