# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Conversions between ROS messages and the package's numpy/engine types.

cv_bridge is not available everywhere (and the PyPI copy is broken), so images are converted with
numpy here: ``np.frombuffer`` over the message's buffer is free, outgoing images are built with
``data=arr.tobytes()`` (assigning an ndarray to ``msg.data`` costs tens of milliseconds). Every
malformed message raises :class:`MalformedMessageError` (a ``ValueError``) with a reason key and a
message, so that a node can count it by reason and reject it.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from spatial_mllm_ros.core.frames import depth_view, rgb_view
from spatial_mllm_ros.msg import FrameSelection, SpatialAnswer

if TYPE_CHECKING:  # engine/core types are only read attribute by attribute here
    from spatial_mllm_ros.core.selection import Selection
    from spatial_mllm_ros.engine import Answer

_BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1,
                    "16UC1": 2, "mono16": 2, "32FC1": 4}
_KIND_CONSTANTS = {
    "none": SpatialAnswer.KIND_NONE,
    "choice": SpatialAnswer.KIND_CHOICE,
    "number": SpatialAnswer.KIND_NUMBER,
    "text": SpatialAnswer.KIND_TEXT,
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class MalformedMessageError(ValueError):
    """A message that cannot be converted. ``reason`` is a short key for counters (e.g. "bad_step")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def stamp_to_sec(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds as a float."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(seconds: float) -> Time:
    """Seconds -> builtin_interfaces/Time (nanoseconds rounded, never 1e9)."""
    if not math.isfinite(seconds):
        raise ValueError(f"stamp must be finite, got {seconds!r}")
    total_ns = round(seconds * 1e9)
    sec, nanosec = divmod(total_ns, 1_000_000_000)
    return Time(sec=int(sec), nanosec=int(nanosec))


def _check_layout(msg: Image) -> None:
    """Reject empty images and buffers whose size does not match step*height exactly."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise MalformedMessageError("empty_image", f"empty image ({width}x{height})")
    size = len(msg.data)
    if size == 0:
        raise MalformedMessageError("empty_data", "image data is empty")
    row_bytes = width * _BYTES_PER_PIXEL[msg.encoding]
    if step < row_bytes:
        raise MalformedMessageError(
            "bad_step", f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} ({msg.encoding})")
    if size != step * height:
        raise MalformedMessageError(
            "size_mismatch", f"data size {size} != step*height = {step}*{height} = {step * height}")


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) -> (H, W, 3) uint8 RGB.

    Colour encodings come back as read-only views of the message buffer (no copy; bgr8/rgba8/bgra8
    views have a non-contiguous last axis); mono8 is expanded to three channels (one copy).
    Raises ValueError naming what is wrong (encoding, step, size, empty data).
    """
    encoding = str(msg.encoding)
    if encoding not in COLOR_ENCODINGS:
        raise MalformedMessageError(
            "unsupported_encoding",
            f"unsupported encoding {encoding!r} (expected one of {', '.join(COLOR_ENCODINGS)})")
    _check_layout(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if encoding == "mono8":
        rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :width]
        return np.repeat(rows[:, :, None], 3, axis=2)
    return rgb_view(msg.data, height, width, step, encoding)


def depth_to_array(msg: Image) -> tuple[np.ndarray, float]:
    """Depth image -> ((H, W) array, metres per unit): 16UC1/mono16 millimetres or 32FC1 metres.

    A zero-copy view unless the data is big-endian; ValueError with the reason when malformed.
    """
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise MalformedMessageError(
            "unsupported_encoding",
            f"unsupported depth encoding {encoding!r} (expected one of {', '.join(DEPTH_ENCODINGS)})")
    _check_layout(msg)
    return depth_view(msg.data, int(msg.height), int(msg.width), int(msg.step), encoding,
                      is_bigendian=bool(msg.is_bigendian))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG, format detected from the bytes) -> (H, W, 3) uint8 RGB."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    data = bytes(msg.data)
    if not data:
        raise MalformedMessageError("empty_data", "compressed image data is empty")
    if "compresseddepth" in str(msg.format).lower():
        raise MalformedMessageError(
            "unsupported_encoding", f"compressedDepth images are not colour images (format {msg.format!r})")
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
            rgb.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise MalformedMessageError(
            "undecodable", f"cannot decode compressed image (format {msg.format!r}): {error}") from error
    array = np.asarray(rgb, dtype=np.uint8)
    if array.size == 0:
        raise MalformedMessageError("empty_image", "compressed image decodes to an empty image")
    return array


def rgb_to_image(rgb: np.ndarray, stamp: float | Time | None = None, frame_id: str = "",
                 encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB (or (H, W) for mono8) -> sensor_msgs/Image, data via ``tobytes``."""
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if encoding == "bgr8":
        array = array[:, :, ::-1]
    elif encoding == "mono8":
        if array.ndim == 3:
            raise ValueError("mono8 needs an (H, W) array")
    elif encoding != "rgb8":
        raise ValueError(f"rgb_to_image writes rgb8, bgr8 or mono8, not {encoding!r}")
    if encoding != "mono8" and (array.ndim != 3 or array.shape[2] != 3):
        raise ValueError(f"expected an (H, W, 3) array, got shape {array.shape}")
    height, width = array.shape[:2]
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=False,
                step=width * (1 if encoding == "mono8" else 3))
    _fill_header(msg, stamp, frame_id)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def depth_to_image(depth: np.ndarray, stamp: float | Time | None = None, frame_id: str = "") -> Image:
    """(H, W) float32 metres -> 32FC1, or uint16 millimetres -> 16UC1 sensor_msgs/Image."""
    array = np.asarray(depth)
    encodings = {np.dtype(np.float32): "32FC1", np.dtype(np.uint16): "16UC1"}
    if array.ndim != 2 or array.dtype not in encodings:
        raise ValueError(f"expected (H, W) float32 or uint16 depth, got {array.dtype} {array.shape}")
    height, width = array.shape
    msg = Image(height=height, width=width, encoding=encodings[array.dtype],
                is_bigendian=sys.byteorder == "big", step=width * array.dtype.itemsize)
    _fill_header(msg, stamp, frame_id)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def camera_info_to_k(msg: CameraInfo) -> np.ndarray:
    """CameraInfo -> (3, 3) float64 intrinsics; ValueError when K is missing (all zeros) or malformed."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise MalformedMessageError("bad_intrinsics", f"camera_info K has {k.size} entries, expected 9")
    k = k.reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise MalformedMessageError("uncalibrated", "camera_info K is uncalibrated (fx or fy not positive)")
    return k


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> (3, 3) rotation matrix; ValueError when the norm is ~0."""
    q = np.array([w, x, y, z], dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-9:
        raise MalformedMessageError("bad_quaternion", "quaternion has zero or non-finite norm")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4) float64 homogeneous transform (child -> parent)."""
    matrix = np.eye(4)
    o = pose.orientation
    matrix[:3, :3] = quaternion_to_matrix(o.x, o.y, o.z, o.w)
    p = pose.position
    matrix[:3, 3] = (p.x, p.y, p.z)
    if not np.all(np.isfinite(matrix)):
        raise MalformedMessageError("bad_position", "pose has non-finite position")
    return matrix


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """(4, 4) rigid transform -> geometry_msgs/Pose."""
    m = np.asarray(matrix, dtype=np.float64)
    r = m[:3, :3]
    trace = float(np.trace(r))
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        w, x, y, z = (r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        w, x, y, z = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        w, x, y, z = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in m[:3, 3])
    pose.orientation.x, pose.orientation.y = float(x), float(y)
    pose.orientation.z, pose.orientation.w = float(z), float(w)
    return pose


def _fill_header(msg: object, stamp: float | Time | None, frame_id: str) -> None:
    if isinstance(stamp, Time):
        msg.header.stamp = stamp
    elif stamp is not None:
        msg.header.stamp = sec_to_stamp(float(stamp))
    msg.header.frame_id = frame_id


def _finite_or_nan(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def answer_to_msg(answer: Answer, stamp: float | Time | None = None, frame_id: str = "") -> SpatialAnswer:
    """Engine Answer -> SpatialAnswer (kind string mapped to the KIND_* constants)."""
    msg = SpatialAnswer()
    _fill_header(msg, stamp, frame_id)
    msg.query_id = str(answer.query_id or "")
    msg.question = str(answer.question or "")
    msg.task_type = str(answer.task_type or "")
    msg.answer_kind = _KIND_CONSTANTS.get(str(answer.kind), SpatialAnswer.KIND_NONE)
    msg.choice_letter = str(answer.choice_letter or "")
    msg.choice_index = int(answer.choice_index)
    msg.value = float(answer.value)
    msg.unit = str(answer.unit or "")
    msg.raw_text = str(answer.raw_text or "")
    msg.confidence = float(answer.confidence)
    msg.frame_stamps = [sec_to_stamp(s) for s in answer.frame_stamps]
    msg.selection_ms = float(answer.selection_ms)
    msg.encode_ms = float(answer.encode_ms)
    msg.generate_ms = float(answer.generate_ms)
    msg.model_id = str(answer.model_id or "")
    msg.backend = str(answer.backend or "")
    msg.error = str(answer.error or "")
    return msg


def rejection_msg(reason: str, question: str = "", query_id: str = "", stamp: float | Time | None = None,
                  task_type: str = "") -> SpatialAnswer:
    """A SpatialAnswer that carries only a rejection reason (KIND_NONE)."""
    msg = SpatialAnswer(query_id=query_id, question=question, task_type=task_type,
                        answer_kind=SpatialAnswer.KIND_NONE, choice_index=-1, value=math.nan,
                        confidence=-1.0, error=reason)
    _fill_header(msg, stamp, "")
    return msg


def selection_to_msg(selection: Selection, stamps: Sequence[float], stamp: float | Time | None = None,
                     frame_id: str = "") -> FrameSelection:
    """Core Selection + the stamps of the chosen frames -> FrameSelection."""
    msg = FrameSelection()
    _fill_header(msg, stamp, frame_id)
    msg.method = str(selection.method)
    msg.stamps = [sec_to_stamp(s) for s in stamps]
    msg.coverage = _finite_or_nan(selection.coverage)
    msg.voxel_size = _finite_or_nan(selection.voxel_size)
    msg.candidates = int(selection.candidates)
    return msg
