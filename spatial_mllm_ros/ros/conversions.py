# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Conversions between ROS messages and the package's numpy/engine types.

Decoding is not done here: every image goes through the ROS-free decoder of
:mod:`spatial_mllm_ros.core.imaging` (the bag reader uses the same one) and every pose or intrinsics
matrix through :mod:`spatial_mllm_ros.core.geometry`; this module only hands them message fields.
Outgoing images are built with ``data=arr.tobytes()`` (assigning an ndarray to ``msg.data`` costs
tens of milliseconds). Every malformed message raises :class:`MalformedMessageError` (an
``ImageDecodeError``, itself a ``ValueError``) with a short ``reason`` key, so that a node can count it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Transform
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from spatial_mllm_ros.core import geometry, imaging
from spatial_mllm_ros.core.imaging import COLOR_ENCODINGS, DEPTH_ENCODINGS
from spatial_mllm_ros.core.imaging import ImageDecodeError as MalformedMessageError
from spatial_mllm_ros.msg import FrameSelection, SpatialAnswer

if TYPE_CHECKING:  # engine/core types are only read attribute by attribute here
    from spatial_mllm_ros.core.selection import Selection
    from spatial_mllm_ros.engine import Answer

__all__ = ["COLOR_ENCODINGS", "DEPTH_ENCODINGS", "MalformedMessageError"]

_KIND_CONSTANTS = {
    "none": SpatialAnswer.KIND_NONE,
    "choice": SpatialAnswer.KIND_CHOICE,
    "number": SpatialAnswer.KIND_NUMBER,
    "text": SpatialAnswer.KIND_TEXT,
}


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


def image_to_rgb(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB (a view when possible)."""
    return imaging.decode_color(
        msg.encoding, msg.height, msg.width, msg.step, msg.data, max_pixels=max_pixels
    )


def depth_to_array(msg: Image, max_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """Depth image -> ((H, W) array, metres per unit): 16UC1/mono16 millimetres or 32FC1 metres."""
    return imaging.decode_depth(
        msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian), max_pixels=max_pixels
    )


def compressed_to_rgb(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG only, size checked from the header) -> (H, W, 3) RGB."""
    return imaging.decode_compressed_color(msg.format, msg.data, max_pixels=max_pixels)


def compressed_to_depth(msg: CompressedImage, max_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """image_transport compressedDepth -> ((H, W) array, metres per unit)."""
    return imaging.decode_compressed_depth(msg.format, msg.data, max_pixels=max_pixels)


def camera_info_to_k(msg: CameraInfo) -> np.ndarray:
    """CameraInfo -> (3, 3) float64 intrinsics; MalformedMessageError when K is missing or unusable."""
    try:
        return geometry.intrinsics_from_camera_info(msg.k)
    except ValueError as error:
        raise MalformedMessageError("bad_intrinsics", f"camera_info: {error}") from error


def _rigid(translation, quaternion_xyzw, what: str) -> np.ndarray:
    try:
        matrix = geometry.pose_from_translation_quaternion(translation, quaternion_xyzw)
    except ValueError as error:
        raise MalformedMessageError("bad_pose", f"{what}: {error}") from error
    problem = geometry.pose_problem(matrix)
    if problem:
        raise MalformedMessageError("bad_pose", f"{what}: {problem}")
    return matrix


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4) float64 homogeneous transform (child -> parent)."""
    p, o = pose.position, pose.orientation
    return _rigid((p.x, p.y, p.z), (o.x, o.y, o.z, o.w), "pose")


def transform_to_matrix(transform: Transform) -> np.ndarray:
    """geometry_msgs/Transform -> (4, 4) float64 homogeneous transform (child -> parent)."""
    t, q = transform.translation, transform.rotation
    return _rigid((t.x, t.y, t.z), (q.x, q.y, q.z, q.w), "transform")


def offset_to_matrix(offset: Sequence[float]) -> np.ndarray:
    """[x, y, z, qx, qy, qz, qw] (a pose_offset parameter) -> (4, 4) transform."""
    values = np.asarray(offset, dtype=np.float64).reshape(7)
    return _rigid(values[:3], values[3:], "pose_offset")


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """(4, 4) rigid transform -> geometry_msgs/Pose."""
    translation, quaternion = geometry.pose_to_translation_quaternion(matrix)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in translation)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(v) for v in quaternion
    )
    return pose


def rgb_to_image(
    rgb: np.ndarray, stamp: float | Time | None = None, frame_id: str = "", encoding: str = "rgb8"
) -> Image:
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
    msg = Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=False,
        step=width * (1 if encoding == "mono8" else 3),
    )
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
    msg = Image(
        height=height,
        width=width,
        encoding=encodings[array.dtype],
        is_bigendian=sys.byteorder == "big",
        step=width * array.dtype.itemsize,
    )
    _fill_header(msg, stamp, frame_id)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


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


def rejection_msg(
    reason: str,
    question: str = "",
    query_id: str = "",
    stamp: float | Time | None = None,
    task_type: str = "",
) -> SpatialAnswer:
    """A SpatialAnswer that carries only a rejection reason (KIND_NONE)."""
    msg = SpatialAnswer(
        query_id=query_id,
        question=question,
        task_type=task_type,
        answer_kind=SpatialAnswer.KIND_NONE,
        choice_index=-1,
        value=math.nan,
        confidence=-1.0,
        error=reason,
    )
    _fill_header(msg, stamp, "")
    return msg


def selection_to_msg(
    selection: Selection, stamps: Sequence[float], stamp: float | Time | None = None, frame_id: str = ""
) -> FrameSelection:
    """Core Selection + the stamps of the chosen frames -> FrameSelection."""
    msg = FrameSelection()
    _fill_header(msg, stamp, frame_id)
    msg.method = str(selection.method)
    msg.stamps = [sec_to_stamp(s) for s in stamps]
    msg.coverage = _finite_or_nan(selection.coverage)
    msg.voxel_size = _finite_or_nan(selection.voxel_size)
    msg.candidates = int(selection.candidates)
    return msg
