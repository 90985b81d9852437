# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Camera poses from tf, looked up when a question is answered (never when the image arrives).

A transform often arrives after the image it belongs to (tf publishers run at their own rate, and a
localiser publishes map -> odom late by design), so frames keep their ``header.frame_id`` and stamp and
:meth:`TfPoses.poses` resolves them all at once, with one deadline, in the fixed frame
(``tf.target_frame``). Static transforms hold at every stamp.

With ``tf2_ros`` installed (a normal ROS install) its ``Buffer`` and ``TransformListener`` do the work.
Without it (the pip wheels) the same lookups run on :class:`~spatial_mllm_ros.core.tf_tree.TfTree`, fed
from ``/tf`` and ``/tf_static`` (``tf2_msgs/TFMessage``) with tf2's listener QoS. Either way there is one
listener per activation: :meth:`TfPoses.close` removes its subscriptions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from spatial_mllm_ros.core.tf_tree import TfTree, TransformError
from spatial_mllm_ros.ros import conversions as conv
from spatial_mllm_ros.ros.boundary import Boundary, Counters

try:  # tf2 is part of a normal ROS 2 install, not of the pip wheels
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

# tf2_ros's listener QoS: depth 100, reliable; /tf_static also transient-local (latched).
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Consecutive /tf samples older than the cache window that mean time jumped back (bag loop, sim reset).
CLEAR_AFTER_OLD_SAMPLES = 3


class TfPoses:
    """One activation's tf listener and its query-time pose lookups (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        counters: Counters,
        boundary: Boundary,
        target_frame: str,
        timeout_s: float,
        cache_time_s: float = 30.0,
    ) -> None:
        self._node = node
        self._counters = counters
        self.target_frame = target_frame
        self.timeout_s = float(timeout_s)
        self._subscriptions: list = []
        self._listener = None
        if tf2_ros is not None:
            from rclpy.duration import Duration

            self._tf2_buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s), node=node)
            self._listener = tf2_ros.TransformListener(self._tf2_buffer, node, spin_thread=False)
            return
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError as error:
            raise RuntimeError(
                "pose_source 'tf' needs tf2_ros or at least the tf2_msgs interfaces "
                "(scripts/setup_env.sh builds them)"
            ) from error
        self._tree = TfTree(cache_time_s=cache_time_s)
        self._changed = threading.Condition()
        self._old_streak = 0
        for topic, qos, static in (("/tf", TF_QOS, False), ("/tf_static", TF_STATIC_QOS, True)):
            kind = "tf_static" if static else "tf"
            self._subscriptions.append(
                node.create_subscription(
                    TFMessage, topic, boundary.guard(kind, lambda msg, s=static: self._on_tf(msg, s)), qos
                )
            )

    def close(self) -> None:
        """Remove this listener's subscriptions (deactivate)."""
        if self._listener is not None:
            self._listener.unregister()
            self._listener = None
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            self._node.destroy_subscription(subscription)

    # ------------------------------------------------------------------------------ own tree
    def _on_tf(self, msg: Any, static: bool) -> None:
        kind = "tf_static" if static else "tf"
        self._counters.add(f"messages_{kind}")
        stored = 0
        with self._changed:
            for transform in msg.transforms:
                t, q = transform.transform.translation, transform.transform.rotation
                try:
                    self._tree.set_transform(
                        transform.header.frame_id,
                        transform.child_frame_id,
                        conv.stamp_to_sec(transform.header.stamp),
                        (t.x, t.y, t.z),
                        (q.x, q.y, q.z, q.w),
                        static=static,
                    )
                except TransformError as error:
                    self._counters.add(f"malformed_{kind}_{error.reason}")
                    self._counters.note_error(f"malformed_{kind}", str(error))
                    self._old_streak = self._old_streak + 1 if error.reason == "old_data" else 0
                    if self._old_streak >= CLEAR_AFTER_OLD_SAMPLES:
                        self._tree.clear()
                        self._old_streak = 0
                        self._counters.add("tf_resets")
                    continue
                self._old_streak = 0
                stored += 1
            if stored:
                self._changed.notify_all()
        self._counters.add(f"{kind}_transforms", stored)
        if stored < len(msg.transforms):
            self._counters.add(f"malformed_{kind}")

    def _lookup_own(self, source: str, stamp: float) -> np.ndarray:
        with self._changed:
            return self._tree.lookup(self.target_frame, source, stamp)

    # ------------------------------------------------------------------------------ queries
    def _lookup(self, source: str, stamp: float, remaining: float) -> np.ndarray:
        if self._listener is None:
            return self._lookup_own(source, stamp)
        from rclpy.duration import Duration
        from rclpy.time import Time

        transform = self._tf2_buffer.lookup_transform(
            self.target_frame, source, Time(seconds=stamp), timeout=Duration(seconds=max(0.0, remaining))
        )
        return conv.transform_to_matrix(transform.transform)

    def poses(self, queries: Sequence[tuple[str, float]]) -> list[np.ndarray | None]:
        """Camera-to-target poses of (frame_id, stamp) queries; None where tf has none by the deadline."""
        deadline = time.monotonic() + self.timeout_s
        results: list[np.ndarray | None] = [None] * len(queries)
        pending = list(range(len(queries)))
        last_error = ""
        while pending:
            still = []
            for i in pending:
                source, stamp = queries[i]
                try:
                    results[i] = self._lookup(source, stamp, deadline - time.monotonic())
                except Exception as error:  # tf2_ros raises several exception types, TfTree TransformError
                    last_error = f"{source} at {stamp:.3f}: {error}"
                    still.append(i)
            pending = still
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            if self._listener is None:
                with self._changed:
                    self._changed.wait(timeout=min(remaining, 0.05))
        if pending:
            self._counters.add("tf_unavailable", len(pending))
            self._counters.note_error("tf_unavailable", last_error)
        return results
