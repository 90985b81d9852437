# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The shared image decoder: layouts, encodings, JPEG/PNG only, pixel caps from the header."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from spatial_mllm_ros.core.imaging import (
    ImageDecodeError,
    decode_color,
    decode_compressed_color,
    decode_compressed_depth,
    decode_depth,
)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format=fmt)
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) \
        + chunk(b"IEND", b"")


def test_raw_colour_encodings_agree():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1].tobytes()
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2).tobytes()
    np.testing.assert_array_equal(decode_color("rgb8", 4, 5, 15, rgb.tobytes()), rgb)
    np.testing.assert_array_equal(decode_color("bgr8", 4, 5, 15, bgr), rgb)
    np.testing.assert_array_equal(decode_color("rgba8", 4, 5, 20, rgba), rgb)
    padded = np.zeros((4, 8), np.uint8)
    padded[:, :5] = rgb[:, :, 0]
    mono = decode_color("mono8", 4, 5, 8, padded.tobytes())
    np.testing.assert_array_equal(mono, np.repeat(rgb[:, :, :1], 3, axis=2))


@pytest.mark.parametrize(("args", "reason"), [
    (("yuv422", 2, 2, 4, b"\0" * 8), "unsupported_encoding"),
    (("rgb8", 0, 2, 6, b""), "empty_image"),
    (("rgb8", 2, 2, 6, b""), "empty_data"),
    (("rgb8", 2, 2, 5, b"\0" * 10), "bad_step"),
    (("rgb8", 2, 2, 6, b"\0" * 11), "size_mismatch"),
])
def test_raw_layout_errors(args, reason):
    with pytest.raises(ImageDecodeError) as error:
        decode_color(*args)
    assert error.value.reason == reason


def test_raw_pixel_cap_checked_before_the_bytes():
    with pytest.raises(ImageDecodeError) as error:
        decode_color("rgb8", 12000, 12000, 36000, b"\0", max_pixels=1_000_000)
    assert error.value.reason == "too_many_pixels"


def test_depth_encodings():
    mm = np.array([[1000, 2000], [0, 65535]], np.uint16)
    depth, scale = decode_depth("16UC1", 2, 2, 4, mm.tobytes())
    np.testing.assert_array_equal(depth, mm)
    assert scale == 0.001
    swapped, _ = decode_depth("16UC1", 2, 2, 4, mm.astype(">u2").tobytes(), is_bigendian=True)
    np.testing.assert_array_equal(swapped, mm)
    metres = np.array([[1.5, np.nan]], np.float32)
    depth, scale = decode_depth("32FC1", 1, 2, 8, metres.tobytes())
    assert scale == 1.0 and depth[0, 0] == np.float32(1.5)
    with pytest.raises(ImageDecodeError) as error:
        decode_depth("16UC1", 2, 2, 5, b"\0" * 10)
    assert error.value.reason == "bad_step"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_compressed_jpeg_and_png(fmt):
    rgb = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    decoded = decode_compressed_color(fmt.lower(), _encode(rgb, fmt))
    assert decoded.shape == (16, 24, 3) and decoded.dtype == np.uint8
    if fmt == "PNG":
        np.testing.assert_array_equal(decoded, rgb)


def test_bomb_header_refused_without_decoding():
    bomb = _png_header_only(20000, 20000)
    assert len(bomb) < 100
    with pytest.raises(ImageDecodeError) as error:
        decode_compressed_color("png", bomb, max_pixels=4_000_000)
    assert error.value.reason == "too_many_pixels"
    with pytest.raises(ImageDecodeError) as no_cap:  # PIL's own bomb guard, still a clean error
        decode_compressed_color("png", _png_header_only(60000, 60000))
    assert no_cap.value.reason == "too_many_pixels"


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP"])
def test_other_formats_refused(fmt):
    data = _encode(np.zeros((4, 4, 3), np.uint8), fmt)
    with pytest.raises(ImageDecodeError) as error:
        decode_compressed_color("jpeg", data)
    assert error.value.reason == "undecodable"


def test_garbage_and_truncated_bytes():
    good = _encode(np.full((32, 32, 3), 128, np.uint8), "JPEG")
    for data in (b"not an image", good[:40], b"\xff\xd8\xff" + bytes(range(256)) * 3):
        with pytest.raises(ImageDecodeError) as error:
            decode_compressed_color("jpeg", data)
        assert error.value.reason == "undecodable"
    with pytest.raises(ImageDecodeError) as empty:
        decode_compressed_color("jpeg", b"")
    assert empty.value.reason == "empty_data"


def test_compressed_depth_16uc1_and_32fc1():
    mm = np.array([[500, 1000], [0, 4000]], np.uint16)
    png = _encode(mm, "PNG")
    header = struct.pack("<iff", 0, 0.0, 0.0)
    depth, scale = decode_compressed_depth("16UC1; compressedDepth png", header + png)
    np.testing.assert_array_equal(depth, mm)
    assert scale == 0.001
    quant_a, quant_b = 100.0, 10.0  # value = A / depth + B
    metres = np.array([[1.0, 2.0]], np.float32)
    values = (quant_a / metres + quant_b).astype(np.uint16)
    depth, scale = decode_compressed_depth("32FC1; compressedDepth png",
                                           struct.pack("<iff", 0, quant_a, quant_b) + _encode(values, "PNG"))
    np.testing.assert_allclose(depth, metres, rtol=1e-6)
    assert scale == 1.0
    with pytest.raises(ImageDecodeError) as error:
        decode_compressed_depth("jpeg", png)
    assert error.value.reason == "unsupported_encoding"
