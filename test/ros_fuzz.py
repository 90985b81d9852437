# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Malformed ROS messages for every input of the nodes: hypothesis strategies plus the issue's table.

Used by ``test/test_ros_fuzz.py`` (node processes over real DDS) and ``benchmarks/bench_nodes.py``
(messages sent / counted, crashes, RSS growth). The strategies stay within what DDS can carry (field
types and ranges of the messages) and keep payloads small, so that thousands of them cost seconds; the
table rows (:func:`table_rows`) are the large and hostile single messages measured on ``main``.
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from spatial_mllm_ros.action import ScoreTrajectory
from spatial_mllm_ros.srv import AskSpatial
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
COLOR = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "8UC1")
DEPTH = ("16UC1", "mono16", "32FC1")
BYTES_PER_PIXEL = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "8UC1": 1,
    "16UC1": 2,
    "mono16": 2,
    "32FC1": 4,
}
OPTICAL = "camera_color_optical_frame"
MAX_LAYOUT_BYTES = 48 * 48 * 4 + 4 * 48  # consistent layouts stay small: thousands of them cost seconds


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    PILImage.new(mode, (width, height), 90).save(out, format="PNG")
    return out.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (width, height), (10, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's 68 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def _other_format(fmt: str) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), 5).save(out, format=fmt)
    return out.getvalue()


COMPRESSED_SAMPLES = (
    _png(16, 12),
    _jpeg(16, 12),
    _png(1, 1),
    _png(16, 12, "L"),
    _png(16, 12, "RGBA"),
    png_declaring(20000, 20000),
    _other_format("GIF"),
    _other_format("BMP"),
    _other_format("TIFF"),
    b"",
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
)

stamps = st.builds(Time, sec=st.integers(*INT32) | st.integers(0, 400), nanosec=st.integers(*UINT32))
frame_ids = st.sampled_from(["", OPTICAL, "/" + OPTICAL, "x" * 300]) | st.text(max_size=24)
small_sizes = st.integers(0, 48) | st.sampled_from([1, 2, 20000, 2**31, 2**32 - 1])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 1e-300, -1e-300, 1e300, 1.0])


@st.composite
def raw_images(draw, encodings=COLOR + DEPTH) -> Image:
    """sensor_msgs/Image: mostly consistent layouts of odd sizes, often broken ones."""
    msg = Image(
        encoding=draw(st.sampled_from(encodings) | st.text(max_size=12)), is_bigendian=draw(st.booleans())
    )
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    width, height = draw(small_sizes), draw(small_sizes)
    msg.width, msg.height = width, height
    bpp = BYTES_PER_PIXEL.get(msg.encoding, 3)
    step = width * bpp + draw(st.sampled_from([0, 0, 1, 4]))
    if draw(st.booleans()) and step * height <= MAX_LAYOUT_BYTES:  # (0 x 2**32-1 has a 4 x 2**32 layout)
        msg.step = step
        values = draw(st.binary(min_size=0, max_size=64))
        data = (
            (values * (msg.step * height // max(1, len(values)) + 1))[: msg.step * height]
            if values
            else bytes(msg.step * height)
        )
        msg.data = data
    else:
        msg.step = draw(st.integers(*UINT32) | st.integers(0, 200))
        msg.data = draw(st.binary(max_size=512))
    return msg


@st.composite
def compressed_images(draw) -> CompressedImage:
    """sensor_msgs/CompressedImage: real JPEG/PNG, bombs, other formats, truncated and mutated bytes."""
    data = bytearray(draw(st.sampled_from(COMPRESSED_SAMPLES)))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    msg = CompressedImage(
        format=draw(
            st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth png", ""])
            | st.text(max_size=16)
        )
    )
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    msg.data = bytes(data)
    return msg


@st.composite
def camera_infos(draw) -> CameraInfo:
    """CameraInfo with absurd, missing, non-finite or mismatched intrinsics and sizes."""
    k = draw(st.lists(floats, min_size=9, max_size=9))
    if draw(st.booleans()):
        k[1] = k[3] = k[6] = k[7] = 0.0
        k[8] = 1.0
    msg = CameraInfo(width=draw(small_sizes), height=draw(small_sizes), k=k)
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    return msg


def _fill_pose(draw, pose) -> None:
    pose.position.x, pose.position.y, pose.position.z = (draw(floats) for _ in range(3))
    o = pose.orientation
    o.x, o.y, o.z, o.w = (draw(floats) for _ in range(4))


@st.composite
def pose_stampeds(draw) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    _fill_pose(draw, msg.pose)
    return msg


@st.composite
def odometries(draw) -> Odometry:
    msg = Odometry(child_frame_id=draw(frame_ids))
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    _fill_pose(draw, msg.pose.pose)
    return msg


@st.composite
def transforms(draw) -> TransformStamped:
    msg = TransformStamped(child_frame_id=draw(frame_ids))
    msg.header.stamp, msg.header.frame_id = draw(stamps), draw(frame_ids)
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (draw(floats) for _ in range(3))
    q.x, q.y, q.z, q.w = (draw(floats) for _ in range(4))
    return msg


tf_messages = st.builds(TFMessage, transforms=st.lists(transforms(), max_size=4))

json_values = st.recursive(
    st.none() | st.booleans() | floats | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
QUESTION_KEYS = ("question", "options", "task_type", "query_id", "max_frames", "window_start", "window_end")


@st.composite
def question_texts(draw) -> String:
    """~/question: plain text, broken JSON, JSON of any shape, question objects with wrong field types."""
    kind = draw(st.sampled_from(["text", "json", "object", "broken"]))
    if kind == "text":
        text = draw(st.text(max_size=80))
    elif kind == "json":
        text = json.dumps(draw(json_values))
    elif kind == "object":
        fields = draw(
            st.dictionaries(st.sampled_from(QUESTION_KEYS) | st.text(max_size=8), json_values, max_size=5)
        )
        text = json.dumps(fields)
    else:
        text = json.dumps({"question": draw(st.text(max_size=20))})[: draw(st.integers(0, 30))] + draw(
            st.text(max_size=5)
        )
    return String(data=text)


@st.composite
def ask_requests(draw) -> AskSpatial.Request:
    return AskSpatial.Request(
        question=draw(st.text(max_size=60) | st.sampled_from(["", "   ", "How far is the chair?"])),
        options=draw(st.lists(st.text(max_size=12), max_size=30)),
        task_type=draw(st.text(max_size=12) | st.sampled_from(["", "object_counting", "route_plan"])),
        window_start=draw(stamps),
        window_end=draw(stamps),
        max_frames=draw(st.integers(*UINT32) | st.integers(0, 8)),
        query_id=draw(st.text(max_size=20)),
    )


@st.composite
def score_goals(draw) -> ScoreTrajectory.Goal:
    return ScoreTrajectory.Goal(
        instruction=draw(st.text(max_size=40) | st.sampled_from(["", "push the red box", "x" * 3000])),
        mode=draw(st.sampled_from(["progress", "displacement", "", "PROGRESS"]) | st.text(max_size=8)),
        target_displacement=draw(floats),
        stride=draw(st.integers(*UINT32) | st.integers(0, 4)),
        bag_path=draw(
            st.sampled_from(["", "/", "/etc/passwd", "/nonexistent/bag", "../../", "\x01"])
            | st.text(max_size=20)
        ),
        topic=draw(st.text(max_size=20)),
        window_start=draw(stamps),
        window_end=draw(stamps),
        episode_id=draw(st.text(max_size=20)),
    )


def _image(width: int, height: int, stamp: float, frame_id: str = OPTICAL) -> Image:
    msg = Image(width=width, height=height, encoding="rgb8", step=3 * width)
    msg.header.stamp = Time(sec=int(stamp), nanosec=round((stamp % 1) * 1e9))
    msg.header.frame_id = frame_id
    msg.data = bytes(3 * width * height)
    return msg


def table_rows(start_stamp: float) -> dict[str, list]:
    """The single messages of the issue's table, by input (``image``, ``compressed``, ``pose``, ...).

    Each kills or poisons a node on ``main``; here each must be refused or bounded, and counted.
    """
    far_future = PoseStamped()
    far_future.header.stamp = Time(sec=int(start_stamp) + 5)
    far_future.pose.orientation.w = 1.0
    far_pose = PoseStamped()
    far_pose.header.stamp = Time(sec=int(start_stamp) + 1)
    far_pose.pose.position.x, far_pose.pose.orientation.w = 1e300, 1.0
    tiny_k = CameraInfo(width=32, height=24, k=[1e-300, 0.0, 16.0, 0.0, 1e-300, 12.0, 0.0, 0.0, 1.0])
    bomb = CompressedImage(format="png", data=png_declaring(20000, 20000))
    big_png = CompressedImage(format="png", data=png_declaring(12000, 12000))
    gif = CompressedImage(format="jpeg", data=_other_format("GIF"))
    big_id = [_image(32, 24, start_stamp + 0.01 * i, frame_id="f" * 1_000_000) for i in range(3)]
    nested = String(data='{"question": ' + "[" * 100_000 + "]" * 100_000 + "}")
    options = String(data=json.dumps({"question": "which?", "options": ["o" * 100_000] * 26}))
    return {
        "image": [_image(1, 1, start_stamp + 0.5), *big_id],
        "compressed": [bomb, big_png, gif],
        "pose": [far_future, far_pose],
        "camera_info": [tiny_k],
        "question": [
            String(data='{"question": "q", "max_frames": 1e400}'),
            String(data='{"question": "q", "max_frames": -Infinity}'),
            nested,
            options,
            *[String(data=f"How far is chair {i}?") for i in range(100)],
        ],
        "ask": [AskSpatial.Request(question="How many chairs?", max_frames=256)],
    }


def good_frame_burst(start_stamp: float, count: int, width: int = 32, height: int = 24) -> list[Image]:
    """Normal frames after the fuzz (so that a normal question has something to look at)."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(count):
        msg = _image(width, height, start_stamp + 0.1 * i)
        msg.data = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8).tobytes()
        frames.append(msg)
    return frames

