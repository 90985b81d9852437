# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``bag_player``: publish a rosbag2 recording, with ``/clock``, where ``ros2 bag`` is not available.

The bag is read with ``rosbags`` (rosbag2 directories with sqlite3 or mcap storage, bare ``.mcap``
files) and every message is published as the CDR bytes stored in the bag (``Publisher.publish`` of
raw bytes): nothing is deserialised, so a 30 Hz RGB-D bag plays at rates far above real time.

Timing follows the bag's receive (log) times divided by ``rate`` (``rate: 0`` = as fast as possible);
``/clock`` carries the bag time so that nodes started with ``use_sim_time:=true`` see the recording's
time. Topics whose message package is not installed are skipped with a warning.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from spatial_mllm_ros.ros.conversions import sec_to_stamp
from spatial_mllm_ros.ros.runtime import parameter_descriptor, run

NODE_NAME = "bag_player"


def message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/Image"`` -> the generated Python class (ImportError/AttributeError if absent)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def open_bag(path: str | Path) -> Any:
    """An opened ``rosbags`` AnyReader over a rosbag2 directory or a bare .mcap/.db3 file."""
    from rosbags.highlevel import AnyReader

    from spatial_mllm_ros.bag.reader import resolve_bag_path

    reader = AnyReader([resolve_bag_path(path)])
    reader.open()
    if not reader.is2:
        reader.close()
        raise ValueError(f"{path} is a ROS 1 bag; bag_player publishes rosbag2 (CDR) recordings")
    return reader


class BagPlayer(Node):
    """Publishes a recording at ``rate`` times real time from a background thread (see module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        d = parameter_descriptor
        self.declare_parameters("", [
            ("bag", "", d("rosbag2 directory or .mcap/.db3 file to play (required).", read_only=True)),
            ("rate", 1.0, d("Playback speed factor (1 = real time, 10 = ten times faster); 0 = as fast as "
                            "possible.", read_only=True, float_range=(0.0, 1000.0))),
            ("loop", False, d("Start again from the beginning when the bag ends.", read_only=True)),
            ("topics", [""], d("Topics to play; empty = all.", read_only=True)),
            ("publish_clock", True, d("Publish the bag time on /clock (for use_sim_time).", read_only=True)),
            ("clock_period_s", 0.01, d("Largest gap between /clock messages while waiting for the next "
                                       "message.", read_only=True, float_range=(0.001, 1.0))),
            ("start_delay_s", 1.0, d("Wait this long before the first message (lets subscribers discover "
                                     "the topics).", read_only=True, float_range=(0.0, 60.0))),
            ("reliable", True, d("Publish data topics reliably (else best effort).", read_only=True)),
            ("exit_when_done", True, d("Shut the process down when playback ends (not looping).",
                                       read_only=True)),
        ])
        self.rate = float(self.get_parameter("rate").value)
        self.published: Counter = Counter()
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock_pub = (
            self.create_publisher(Clock, "/clock", QoSProfile(depth=1))
            if self.get_parameter("publish_clock").value
            else None
        )
        bag = self.get_parameter("bag").value
        if not bag:
            raise ValueError("parameter 'bag' is required (-p bag:=/path/to/rosbag2_dir)")
        self._reader = open_bag(bag)
        wanted = {t for t in self.get_parameter("topics").value if t}
        qos = QoSProfile(
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE
            if self.get_parameter("reliable").value
            else ReliabilityPolicy.BEST_EFFORT,
        )
        self._connections = []
        self._topic_publishers: dict[str, Any] = {}
        for connection in self._reader.connections:
            if wanted and connection.topic not in wanted:
                continue
            if connection.topic not in self._topic_publishers:
                try:
                    msg_type = message_class(connection.msgtype)
                except (ImportError, AttributeError, ValueError):
                    self.get_logger().warning(
                        f"skipping {connection.topic}: message type {connection.msgtype} is not installed"
                    )
                    continue
                publisher = self.create_publisher(msg_type, connection.topic, qos)
                self._topic_publishers[connection.topic] = publisher
            self._connections.append(connection)
        self.get_logger().info(
            f"playing {bag}: {len(self._topic_publishers)} topics, "
            f"{self._reader.duration / 1e9:.2f} s, rate {self.rate or 'max'}"
        )

    def start(self) -> None:
        """Start playback on a background thread (called by :func:`run`)."""
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop playback and close the bag."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._reader.close()

    def _publish_clock(self, bag_ns: int) -> None:
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=sec_to_stamp(bag_ns / 1e9)))

    def _wait_until(self, wall_deadline: float, bag_start_ns: int, wall_start: float) -> None:
        """Sleep until ``wall_deadline``, publishing /clock every clock period on the way."""
        period = float(self.get_parameter("clock_period_s").value)
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= wall_deadline:
                return
            time.sleep(min(period, wall_deadline - now))
            if self._clock_pub is not None and time.monotonic() < wall_deadline:
                elapsed_ns = int((time.monotonic() - wall_start) * self.rate * 1e9)
                self._publish_clock(bag_start_ns + elapsed_ns)

    def _play(self) -> None:
        try:
            self._stop.wait(float(self.get_parameter("start_delay_s").value))
            while not self._stop.is_set():
                self._play_once()
                if not self.get_parameter("loop").value:
                    break
            self.get_logger().info(f"played {sum(self.published.values())} messages: {dict(self.published)}")
        except Exception as error:  # a damaged bag ends playback with a message, not a traceback
            self.get_logger().error(f"playback stopped: {type(error).__name__}: {error}")
        finally:
            self.done.set()
            if self.get_parameter("exit_when_done").value and not self._stop.is_set():
                self.context.try_shutdown()

    def _play_once(self) -> None:
        bag_start_ns: int | None = None
        wall_start = time.monotonic()
        for connection, bag_ns, rawdata in self._reader.messages(connections=self._connections):
            if self._stop.is_set():
                return
            if bag_start_ns is None:
                bag_start_ns, wall_start = bag_ns, time.monotonic()
            if self.rate > 0:
                self._wait_until(
                    wall_start + (bag_ns - bag_start_ns) / 1e9 / self.rate, bag_start_ns, wall_start
                )
            self._publish_clock(bag_ns)
            self._topic_publishers[connection.topic].publish(bytes(rawdata))
            self.published[connection.topic] += 1


def main(args: list[str] | None = None) -> int:
    """``bag_player`` entry point: ``bag_player --ros-args -p bag:=DIR [-p rate:=2.0] [-p loop:=true]``."""
    return run([BagPlayer], args)


if __name__ == "__main__":
    raise SystemExit(main())
