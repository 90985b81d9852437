# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``bag_player``: publish a rosbag2 recording, with ``/clock``, where ``ros2 bag`` is not available.

The recording is read like the offline evaluation reads it (:mod:`spatial_mllm_ros.bag.recording`:
split files in ``metadata.yaml`` order, a folder of split files without it, Humble sqlite3 files
without message definitions, a damaged split skipped with a warning) and every message is published
as the CDR bytes stored in the bag (``Publisher.publish`` of raw bytes): nothing is deserialised, so
a 30 Hz RGB-D bag plays far above real time and unparseable schemas never matter.

Each topic is published with the QoS it was recorded with, as ``ros2 bag play`` adapts it: reliable
unless a recorded publisher was best effort, transient local when every recorded publisher was (so
``/tf_static`` and ``/robot_description`` reach late subscribers; the history then holds every
recorded message of the topic, up to 1000, since one player publisher stands in for several
broadcasters). Topics recorded without QoS use the ``reliable`` parameter. ``/tf`` and
``/tf_static`` are played like any topic, which needs ``tf2_msgs`` installed.

Timing follows the bag's receive (log) times divided by ``rate`` (``rate: 0`` = as fast as possible);
``/clock`` carries the bag time so that nodes started with ``use_sim_time:=true`` see the recording's
time. Topics whose message package is not installed are skipped with a warning; when nothing is left
to play, the player stops with the reason (exit code 1). Ctrl-C during playback is a normal stop.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from spatial_mllm_ros.bag.recording import BagReadError, Recording, open_recording
from spatial_mllm_ros.ros.conversions import sec_to_stamp
from spatial_mllm_ros.ros.runtime import parameter_descriptor, run

NODE_NAME = "bag_player"
LATCHED_HISTORY_LIMIT = 1000


def message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/Image"`` -> the generated Python class (ImportError/AttributeError if absent)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def open_bag(path: str | Path) -> Recording:
    """The recording at ``path`` (FileNotFoundError, NotABagError or BagReadError when unreadable)."""
    recording = open_recording(path)
    recording.close()  # listing topics keeps files open for reading; playback reopens them as it goes
    if not recording.connections() and recording.damage:
        raise BagReadError(f"bag {recording.path} cannot be read: {'; '.join(recording.damage)}")
    return recording


def playback_qos(offers, message_count: int, reliable_default: bool) -> QoSProfile:
    """The QoS to replay a topic with, from the QoS profiles its recorded publishers offered."""
    from rosbags.interfaces import QosDurability, QosReliability

    if offers:
        reliable = all(q.reliability != QosReliability.BEST_EFFORT for q in offers)
        latched = all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offers)
    else:
        reliable, latched = reliable_default, False
    depth = max(10, min(message_count, LATCHED_HISTORY_LIMIT)) if latched else 10
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class BagPlayer(Node):
    """Publishes a recording at ``rate`` times real time from a background thread (see module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        d = parameter_descriptor
        self.declare_parameters("", [
            ("bag", "", d("rosbag2 directory, folder of split files or .mcap/.db3 file to play (required).",
                          read_only=True)),
            ("rate", 1.0, d("Playback speed factor (1 = real time, 10 = ten times faster); 0 = as fast as "
                            "possible.", read_only=True, float_range=(0.0, 1000.0))),
            ("loop", False, d("Start again from the beginning when the bag ends.", read_only=True)),
            ("topics", [""], d("Topics to play; empty = all.", read_only=True)),
            ("publish_clock", True, d("Publish the bag time on /clock (for use_sim_time).", read_only=True)),
            ("clock_period_s", 0.01, d("Largest gap between /clock messages while waiting for the next "
                                       "message.", read_only=True, float_range=(0.001, 1.0))),
            ("start_delay_s", 1.0, d("Wait this long before the first message (lets subscribers discover "
                                     "the topics).", read_only=True, float_range=(0.0, 60.0))),
            ("wait_for_subscribers_s", 0.0, d("After the start delay, wait up to this long until every "
                                              "played topic has a subscriber (0: do not wait).",
                                              read_only=True, float_range=(0.0, 600.0))),
            ("reliable", True, d("Publish topics recorded without QoS reliably (else best effort).",
                                 read_only=True)),
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
        self._recording = open_bag(bag)
        wanted = {t for t in self.get_parameter("topics").value if t}
        offers: dict[str, list] = {}
        counts: Counter = Counter()
        types: dict[str, str] = {}
        for connection in self._recording.connections():
            if wanted and connection.topic not in wanted:
                continue
            types.setdefault(connection.topic, connection.msgtype)
            offers.setdefault(connection.topic, []).extend(connection.offered_qos)
            counts[connection.topic] += connection.message_count
        self._topic_publishers: dict[str, Any] = {}
        skipped = []
        for topic, msgtype in sorted(types.items()):
            try:
                msg_type = message_class(msgtype)
            except (ImportError, AttributeError, ValueError):
                skipped.append(f"{topic} ({msgtype}: package {msgtype.split('/')[0]} not installed)")
                continue
            qos = playback_qos(offers[topic], counts[topic], bool(self.get_parameter("reliable").value))
            self._topic_publishers[topic] = self.create_publisher(msg_type, topic, qos)
        for reason in skipped:
            self.get_logger().warning(f"skipping {reason}")
        if not self._topic_publishers:
            missing = sorted(wanted - set(types)) if wanted else []
            raise ValueError(f"nothing to play in {bag}: "
                             + ("; ".join(skipped) if skipped else
                                f"no topic{'s' if len(missing) != 1 else ''} {', '.join(missing)} in the bag"
                                if missing else "the recording has no topics"))
        self.get_logger().info(
            f"playing {bag}: {len(self._topic_publishers)} topics ({', '.join(self._topic_publishers)}) "
            f"from {len(self._recording.files)} file(s), rate {self.rate or 'max'}"
        )

    def start(self) -> None:
        """Start playback on a background thread (called by :func:`run`)."""
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop playback."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

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

    def _wait_for_subscribers(self) -> None:
        """Block until every topic has a subscriber or the wait is over (discovery can take seconds)."""
        limit = float(self.get_parameter("wait_for_subscribers_s").value)
        deadline = time.monotonic() + limit
        while limit > 0 and not self._stop.is_set() and time.monotonic() < deadline:
            lonely = [t for t, p in self._topic_publishers.items() if p.get_subscription_count() == 0]
            if not lonely:
                self._stop.wait(0.5)  # the subscribers' side of the match settles a moment later
                return
            self._stop.wait(0.05)
        if limit > 0 and not self._stop.is_set():
            self.get_logger().warning(f"no subscriber after {limit:g} s on: {', '.join(lonely)}")

    def _play(self) -> None:
        try:
            self._stop.wait(float(self.get_parameter("start_delay_s").value))
            self._wait_for_subscribers()
            while not self._stop.is_set():
                self._play_once()
                if not self.get_parameter("loop").value:
                    break
            self.get_logger().info(f"played {sum(self.published.values())} messages: {dict(self.published)}")
            if self._recording.damage:
                self.get_logger().warning(f"damaged parts of the recording were skipped: "
                                          f"{'; '.join(self._recording.damage)}")
        except Exception as error:  # a shutdown mid-publish (Ctrl-C) is a normal stop, anything else is not
            if self._stop.is_set() or not rclpy.ok(context=self.context):
                return
            self.get_logger().error(f"playback stopped: {type(error).__name__}: {error}")
        finally:
            self.done.set()
            if self.get_parameter("exit_when_done").value and not self._stop.is_set():
                self.context.try_shutdown()

    def _play_once(self) -> None:
        bag_start_ns: int | None = None
        wall_start = time.monotonic()
        for topic, _, bag_ns, rawdata in self._recording.messages(set(self._topic_publishers)):
            if self._stop.is_set():
                return
            if bag_start_ns is None:
                bag_start_ns, wall_start = bag_ns, time.monotonic()
            if self.rate > 0:
                self._wait_until(
                    wall_start + (bag_ns - bag_start_ns) / 1e9 / self.rate, bag_start_ns, wall_start
                )
            if self._stop.is_set():
                return
            self._publish_clock(bag_ns)
            self._topic_publishers[topic].publish(bytes(rawdata))
            self.published[topic] += 1


def main(args: list[str] | None = None) -> int:
    """``bag_player`` entry point: ``bag_player --ros-args -p bag:=DIR [-p rate:=2.0] [-p loop:=true]``."""
    return run([BagPlayer], args)


if __name__ == "__main__":
    raise SystemExit(main())
