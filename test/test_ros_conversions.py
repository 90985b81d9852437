# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Message conversions: every supported encoding round-trips, every malformed image is named."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from spatial_mllm_ros.msg import SpatialAnswer

from spatial_mllm_ros.ros import conversions as conv

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _image(array: np.ndarray, encoding: str, pad: int = 0) -> Image:
    height, width = array.shape[:2]
    row = array.reshape(height, -1).view(np.uint8)
    padded = np.zeros((height, row.shape[1] + pad), np.uint8)
    padded[:, :row.shape[1]] = row
    msg = Image(height=height, width=width, encoding=encoding, step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_come_back_as_rgb(pad):
    alpha = np.full((5, 7, 1), 9, np.uint8)
    cases = {
        "rgb8": RGB,
        "bgr8": RGB[:, :, ::-1],
        "rgba8": np.concatenate([RGB, alpha], axis=2),
        "bgra8": np.concatenate([RGB[:, :, ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        out = conv.image_to_rgb(_image(np.ascontiguousarray(pixels), encoding, pad))
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8, encoding
        np.testing.assert_array_equal(out, RGB, err_msg=encoding)
    gray = RGB[:, :, 0].copy()
    out = conv.image_to_rgb(_image(gray, "mono8", pad))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_rgb8_is_a_zero_copy_view_of_the_message_buffer():
    msg = conv.rgb_to_image(RGB, stamp=12.5, frame_id="cam")
    out = conv.image_to_rgb(msg)
    assert not out.flags.owndata and not out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert msg.header.frame_id == "cam" and conv.stamp_to_sec(msg.header.stamp) == 12.5


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported colour encoding"),
    (lambda m: setattr(m, "step", 5), "step 5 is smaller"),
    (lambda m: setattr(m, "data", bytes(10)), r"data size 10 != step\*height"),
    (lambda m: setattr(m, "data", b""), "image data is empty"),
    (lambda m: setattr(m, "height", 0), "empty image"),
])
def test_malformed_images_raise_value_error_with_the_reason(mutate, reason):
    msg = conv.rgb_to_image(RGB)
    mutate(msg)
    with pytest.raises(conv.MalformedMessageError, match=reason) as raised:
        conv.image_to_rgb(msg)
    assert isinstance(raised.value, ValueError) and raised.value.reason


def test_depth_millimetres_and_metres():
    mm = RNG.integers(0, 5000, size=(4, 6), dtype=np.uint16)
    depth, scale = conv.depth_to_array(conv.depth_to_image(mm))
    np.testing.assert_array_equal(depth, mm)
    assert scale == 0.001
    metres = RNG.random((4, 6), dtype=np.float32)
    padded = _image(metres, "32FC1", pad=8)
    depth, scale = conv.depth_to_array(padded)
    np.testing.assert_array_equal(depth, metres)
    assert scale == 1.0
    big = Image(height=1, width=2, encoding="16UC1", is_bigendian=True, step=4)
    big.data = np.array([1000, 2], dtype=">u2").tobytes()
    np.testing.assert_array_equal(conv.depth_to_array(big)[0], [[1000, 2]])
    with pytest.raises(ValueError, match="unsupported depth encoding"):
        conv.depth_to_array(conv.rgb_to_image(RGB))


def test_compressed_png_and_jpeg_decode_and_garbage_is_rejected():
    for fmt in ("png", "jpeg"):
        raw = io.BytesIO()
        PILImage.fromarray(RGB).save(raw, format=fmt.upper())
        msg = CompressedImage(format=fmt)
        msg.data = raw.getvalue()
        out = conv.compressed_to_rgb(msg)
        assert out.shape == (5, 7, 3)
        if fmt == "png":
            np.testing.assert_array_equal(out, RGB)
    bad = CompressedImage(format="jpeg")
    bad.data = b"not an image at all"
    with pytest.raises(ValueError, match="JPEG or PNG expected"):
        conv.compressed_to_rgb(bad)
    with pytest.raises(ValueError, match="empty"):
        conv.compressed_to_rgb(CompressedImage(format="png"))


def test_stamps_round_trip_and_carry_nanoseconds():
    for seconds in (0.0, 1.5, 1700000000.123456789, 2.9999999999):
        stamp = conv.sec_to_stamp(seconds)
        assert 0 <= stamp.nanosec < 1_000_000_000
        assert abs(conv.stamp_to_sec(stamp) - seconds) < 1e-6
    with pytest.raises(ValueError):
        conv.sec_to_stamp(math.nan)


def test_pose_matrix_round_trip_and_camera_info():
    angle = 0.7
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0],
                         [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = (1.0, -2.0, 0.5)
    np.testing.assert_allclose(conv.pose_to_matrix(conv.matrix_to_pose(matrix)), matrix, atol=1e-12)
    info = CameraInfo(k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    assert conv.camera_info_to_k(info)[0, 2] == 320.0
    with pytest.raises(conv.MalformedMessageError, match="fx, fy > 0") as raised:
        conv.camera_info_to_k(CameraInfo())
    assert raised.value.reason == "bad_intrinsics"
    absurd = CameraInfo(k=[1e-300, 0.0, 320.0, 0.0, 1e-300, 240.0, 0.0, 0.0, 1.0])
    with pytest.raises(conv.MalformedMessageError):
        conv.camera_info_to_k(absurd)
    far = conv.matrix_to_pose(np.eye(4))
    far.position.x = 1e300
    with pytest.raises(conv.MalformedMessageError, match="pose"):
        conv.pose_to_matrix(far)


@dataclass
class _Selection:
    method: str = "space_aware"
    coverage: float = 0.75
    voxel_size: float = math.nan
    candidates: int = 40
    indices: list = field(default_factory=lambda: [0, 3])


@dataclass
class _Answer:  # the engine's Answer fields (contracts.md), filled by hand
    query_id: str = "q1"
    question: str = "How far?"
    task_type: str = "object_abs_distance"
    kind: str = "number"
    choice_letter: str = ""
    choice_index: int = -1
    value: float = 1.8
    unit: str = "m"
    raw_text: str = "1.8 m"
    confidence: float = -1.0
    frame_stamps: list = field(default_factory=lambda: [1.0, 2.5])
    selection: _Selection = field(default_factory=_Selection)
    selection_ms: float = 1.0
    encode_ms: float = 2.0
    generate_ms: float = 3.0
    model_id: str = "tiny"
    backend: str = "torch-cpu"
    error: str = ""


def test_answer_and_selection_messages():
    answer = _Answer()
    msg = conv.answer_to_msg(answer, stamp=3.0, frame_id="cam")
    assert msg.answer_kind == SpatialAnswer.KIND_NUMBER and msg.value == 1.8 and msg.unit == "m"
    assert [conv.stamp_to_sec(s) for s in msg.frame_stamps] == [1.0, 2.5]
    assert (msg.model_id, msg.backend, msg.error) == ("tiny", "torch-cpu", "")
    selection = conv.selection_to_msg(answer.selection, answer.frame_stamps)
    assert selection.method == "space_aware" and selection.candidates == 40
    assert math.isnan(selection.voxel_size) and selection.coverage == pytest.approx(0.75)
    rejected = conv.rejection_msg("busy: 1 question pending", question="q", query_id="x")
    assert rejected.answer_kind == SpatialAnswer.KIND_NONE and rejected.error.startswith("busy")
