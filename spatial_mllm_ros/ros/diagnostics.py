# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``/diagnostics`` for the package's nodes: one status per node, published on a steady-clock timer.

Each node supplies ``values()`` (a flat dict, every value read under the lock of whatever owns it) and
``summary(values)`` (level and message). The timer runs on the steady clock so that diagnostics keep
coming while simulated time (bag replay) is paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from spatial_mllm_ros.ros.boundary import Boundary

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class Diagnostics:
    """Publisher + timer of one node's status (created at configure, destroyed at cleanup)."""

    def __init__(
        self,
        node: Node,
        boundary: Boundary,
        title: str,
        period_s: float,
        values: Callable[[], dict[str, Any]],
        summary: Callable[[dict[str, str]], tuple[int, str]],
    ) -> None:
        self._node = node
        self._title = title
        self._values = values
        self._summary = summary
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(
            period_s,
            boundary.guard("diagnostics", self.publish),
            callback_group=MutuallyExclusiveCallbackGroup(),
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    def status(self) -> DiagnosticStatus:
        """The current status message."""
        values = {key: str(value) for key, value in self._values().items()}
        level, message = self._summary(values)
        return DiagnosticStatus(
            name=f"{self._node.get_fully_qualified_name()}: {self._title}",
            hardware_id=values.get("model_id") or "no-model",
            level=level,
            message=message,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )

    def publish(self) -> None:
        """Publish the status now."""
        array = DiagnosticArray(status=[self.status()])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)

    def close(self) -> None:
        """Remove the timer and the publisher."""
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)
