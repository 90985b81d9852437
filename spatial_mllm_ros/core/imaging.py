# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""One ROS-free image decoder for live messages and recordings (sensor_msgs/Image and CompressedImage).

The ROS node and the bag reader both hand over plain fields (encoding, size, step, bytes), so the same
checks run on a robot and on a recording. Everything a message declares is checked before a pixel is
decoded: the layout of raw images, the size of compressed ones (read from the JPEG/PNG header, so a
68-byte PNG declaring 20000x20000 is refused without allocating anything), and only the JPEG and PNG
decoders are ever used. Every failure is an :class:`ImageDecodeError` with a short ``reason`` key for
counters.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from spatial_mllm_ros.core.frames import COLOR_ENCODINGS as _VIEW_ENCODINGS
from spatial_mllm_ros.core.frames import DEPTH_ENCODINGS as _DEPTH_VIEW_ENCODINGS
from spatial_mllm_ros.core.frames import depth_view, rgb_view

BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1,
                   "16UC1": 2, "mono16": 2, "32FC1": 4}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
DEPTH_ENCODINGS = tuple(_DEPTH_VIEW_ENCODINGS)
# The only decoders PIL may use: a CompressedImage is JPEG or PNG (image_transport's compressed and
# compressedDepth plugins); any other format is refused rather than handed to a rarely used parser.
COMPRESSED_FORMATS = ("JPEG", "PNG")
# A 1 MB 640x480 colour JPEG is large; 64 MiB covers any real camera and bounds what is parsed at all.
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024
_COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")  # image_transport compressedDepth: format, depthQuantA, B


class ImageDecodeError(ValueError):
    """An image that cannot be used. ``reason`` is a short key for counters (e.g. ``"bad_step"``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_pixel_count(width: int, height: int, max_pixels: int | None) -> None:
    """Refuse images larger than ``max_pixels`` (None: no cap) from their declared size."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError("empty_image", f"empty image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError("too_many_pixels",
                               f"image of {width}x{height} = {width * height} pixels exceeds the cap of "
                               f"{max_pixels} pixels")


def _check_layout(encoding: str, height: int, width: int, step: int, size: int,
                  max_pixels: int | None) -> None:
    """The declared layout of a raw image must describe its bytes exactly (step*height)."""
    check_pixel_count(width, height, max_pixels)
    if size == 0:
        raise ImageDecodeError("empty_data", "image data is empty")
    row_bytes = width * BYTES_PER_PIXEL[encoding]
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step", f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} ({encoding})")
    if size != step * height:
        raise ImageDecodeError("size_mismatch",
                               f"data size {size} != step*height = {step}*{height} = {step * height}")


def decode_color(encoding: str, height: int, width: int, step: int, data, *,
                 max_pixels: int | None = None) -> np.ndarray:
    """Raw colour image -> (H, W, 3) uint8 RGB.

    rgb8/bgr8/rgba8/bgra8 come back as read-only views of ``data`` (no copy); mono8/8UC1 is expanded to
    three channels (one copy).
    """
    encoding = str(encoding)
    if encoding not in COLOR_ENCODINGS:
        raise ImageDecodeError("unsupported_encoding",
                               f"unsupported colour encoding {encoding!r} (expected one of "
                               f"{', '.join(COLOR_ENCODINGS)})")
    height, width, step = int(height), int(width), int(step)
    _check_layout(encoding, height, width, step, len(data), max_pixels)
    if encoding in _VIEW_ENCODINGS:
        return rgb_view(data, height, width, step, encoding)
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :width]
    return np.repeat(rows[:, :, None], 3, axis=2)


def decode_depth(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False, *,
                 max_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """Raw depth image -> ((H, W) array, metres per unit): 16UC1/mono16 millimetres, 32FC1 metres.

    A zero-copy view unless the data is big-endian.
    """
    encoding = str(encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise ImageDecodeError("unsupported_encoding",
                               f"unsupported depth encoding {encoding!r} (expected one of "
                               f"{', '.join(DEPTH_ENCODINGS)})")
    height, width, step = int(height), int(width), int(step)
    _check_layout(encoding, height, width, step, len(data), max_pixels)
    try:
        return depth_view(data, height, width, step, encoding, is_bigendian=bool(is_bigendian))
    except ValueError as error:  # a step that is not a multiple of the item size
        raise ImageDecodeError("bad_step", str(error)) from error


def _open_compressed(data: bytes, max_pixels: int | None, what: str):
    """PIL image of JPEG/PNG bytes, its declared size checked before any pixel is decoded."""
    from PIL import Image as PILImage

    if not data:
        raise ImageDecodeError("empty_data", f"{what} data is empty")
    if len(data) > MAX_COMPRESSED_BYTES:
        raise ImageDecodeError("too_many_bytes",
                               f"{what} of {len(data)} bytes exceeds {MAX_COMPRESSED_BYTES} bytes")
    try:
        image = PILImage.open(io.BytesIO(data), formats=COMPRESSED_FORMATS)
    except PILImage.DecompressionBombError as error:  # PIL's own guard, for callers without a cap
        raise ImageDecodeError("too_many_pixels", f"{what}: {error}") from error
    except Exception as error:  # PIL raises many types for hostile bytes
        raise ImageDecodeError("undecodable", f"cannot read {what} (JPEG or PNG expected): "
                                              f"{type(error).__name__}: {error}") from error
    try:
        check_pixel_count(*image.size, max_pixels)
    except ImageDecodeError:
        image.close()
        raise
    return image


def _load(image, convert: str | None, what: str) -> np.ndarray:
    """Decode the pixels of an opened PIL image (closed afterwards)."""
    try:
        with image:
            decoded = image.convert(convert) if convert else image
            decoded.load()
            return np.asarray(decoded)
    except Exception as error:  # truncated or corrupt data fails only while decoding
        raise ImageDecodeError("undecodable",
                               f"cannot decode {what}: {type(error).__name__}: {error}") from error


def decode_compressed_color(format_text: str, data, *, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG, detected from the bytes) -> (H, W, 3) uint8 RGB."""
    if "compresseddepth" in str(format_text).lower():
        raise ImageDecodeError("unsupported_encoding",
                               f"compressedDepth images are not colour images (format {format_text!r})")
    image = _open_compressed(bytes(data), max_pixels, "compressed image")
    rgb = _load(image, "RGB", f"compressed image (format {format_text!r})")
    if rgb.size == 0:
        raise ImageDecodeError("empty_image", "compressed image decodes to an empty image")
    return rgb


def decode_compressed_depth(format_text: str, data, *,
                            max_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """image_transport "compressedDepth": a 12-byte header (format, quantisation A, B) + a 16-bit PNG.

    16UC1 gives uint16 millimetres (scale 0.001); 32FC1 is inverse-depth quantised
    (value = A / depth + B, 0 = no depth) and gives float32 metres (scale 1.0).
    """
    format_text = str(format_text)
    data = bytes(data)
    if "compresseddepth" not in format_text.lower():
        raise ImageDecodeError("unsupported_encoding",
                               f"not a compressedDepth image (format {format_text!r})")
    if len(data) < _COMPRESSED_DEPTH_HEADER.size:
        raise ImageDecodeError("empty_data", f"compressedDepth data of {len(data)} bytes has no header")
    _, quant_a, quant_b = _COMPRESSED_DEPTH_HEADER.unpack_from(data)
    image = _open_compressed(data[_COMPRESSED_DEPTH_HEADER.size:], max_pixels, "compressedDepth PNG")
    values = _load(image, None, "compressedDepth PNG")
    if values.ndim != 2:
        raise ImageDecodeError("unsupported_encoding",
                               f"compressedDepth PNG must have one channel, got shape {values.shape}")
    values = values.astype(np.uint16)
    if format_text.strip().upper().startswith("16UC1"):
        return values, 0.001
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)):
        raise ImageDecodeError("undecodable", "compressedDepth quantisation parameters are not finite")
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(values > 0, quant_a / (values.astype(np.float32) - quant_b), np.nan)
    return depth.astype(np.float32), 1.0
