# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""One camera frame (RGB, optional depth, intrinsics and pose) and zero-copy views of raw image buffers.

A :class:`Frame` is what every later stage (frame selection, pre-processing, the QA engine) consumes.
It holds references, never copies: the RGB array may be a view of a ROS message's byte buffer, so the
message memory stays alive while the frame does and nobody may write into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Depth encodings understood by :func:`depth_view`, with the metres-per-unit scale they imply.
DEPTH_ENCODINGS = {"16UC1": (np.dtype("<u2"), 0.001), "mono16": (np.dtype("<u2"), 0.001),
                   "32FC1": (np.dtype("<f4"), 1.0)}
# Colour encodings understood by :func:`rgb_view`: channels in memory and whether to reverse them.
COLOR_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}
# What the QA engine can show the model: at least 2 pixels a side, and an aspect ratio Qwen2.5-VL's
# resize accepts (its smart_resize refuses more than 200:1). The buffer refuses other frames at ingest.
MIN_FRAME_SIDE = 2
MAX_FRAME_ASPECT = 200


def frame_size_problem(height: int, width: int) -> str:
    """Why a ``height`` x ``width`` image cannot be shown to the model, or "" (buffer and engine rule)."""
    if min(height, width) < MIN_FRAME_SIDE:
        return f"too small ({width}x{height}; at least {MIN_FRAME_SIDE} pixels a side)"
    if max(height, width) > MAX_FRAME_ASPECT * min(height, width):
        return f"aspect ratio of {width}x{height} exceeds {MAX_FRAME_ASPECT}:1"
    return ""


@dataclass
class Frame:
    """One time-stamped camera frame.

    Attributes:
        stamp: acquisition time in seconds (ROS time or sim time).
        camera_id: which camera stream it came from.
        rgb: (H, W, 3) uint8 colour image (may be a read-only view of a message buffer).
        depth: (H, W) float32 metres or uint16 units (see ``depth_scale``), or None.
        depth_scale: metres per depth unit: 1.0 for float32 metres, 0.001 for uint16 millimetres.
        K: (3, 3) float64 pinhole intrinsics of the depth image (registered to RGB), or None.
        pose: (4, 4) float64 camera-to-world transform, OpenCV camera axes (x right, y down,
            z forward), or None.
        frame_id: the optical frame name of the message, informational.
    """

    stamp: float
    camera_id: str
    rgb: np.ndarray
    depth: np.ndarray | None = None
    depth_scale: float = 1.0
    K: np.ndarray | None = None
    pose: np.ndarray | None = None
    frame_id: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.rgb, np.ndarray) and self.rgb.ndim == 3 and self.rgb.shape[2] == 3
                and self.rgb.dtype == np.uint8):
            got = f"{getattr(self.rgb, 'shape', None)} {getattr(self.rgb, 'dtype', type(self.rgb))}"
            raise ValueError(f"Frame.rgb must be an (H, W, 3) uint8 array, got {got}")
        if self.depth is not None:
            if not isinstance(self.depth, np.ndarray) or self.depth.ndim != 2:
                raise ValueError(f"Frame.depth must be an (H, W) array, got "
                                 f"{getattr(self.depth, 'shape', None)}")
            if self.depth.dtype not in (np.float32, np.uint16):
                raise ValueError(f"Frame.depth must be float32 metres or uint16 units, "
                                 f"got {self.depth.dtype}")
            if not (np.isfinite(self.depth_scale) and self.depth_scale > 0):
                raise ValueError(f"Frame.depth_scale must be a positive number, got {self.depth_scale}")
        if self.K is not None:
            if np.shape(self.K) != (3, 3):
                raise ValueError(f"Frame.K must be (3, 3), got {np.shape(self.K)}")
            self.K = np.asarray(self.K, dtype=np.float64)  # no copy when it already is
        if self.pose is not None:
            if np.shape(self.pose) != (4, 4):
                raise ValueError(f"Frame.pose must be (4, 4), got {np.shape(self.pose)}")
            self.pose = np.asarray(self.pose, dtype=np.float64)

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def has_geometry(self) -> bool:
        """True when depth, intrinsics and pose are all present (needed for metric selection)."""
        return self.depth is not None and self.K is not None and self.pose is not None

    @property
    def nbytes(self) -> int:
        """Bytes of image data this frame references (RGB plus depth)."""
        return int(self.rgb.nbytes) + (int(self.depth.nbytes) if self.depth is not None else 0)

    def depth_m(self, stride: int = 1) -> np.ndarray | None:
        """Depth in float32 metres (every ``stride``-th pixel in both axes), or None without depth.

        Zero depth and non-finite values are kept as they are; callers treat them as invalid.
        """
        if self.depth is None:
            return None
        depth = self.depth[::stride, ::stride] if stride > 1 else self.depth
        if depth.dtype == np.float32 and self.depth_scale == 1.0:
            return depth
        return depth.astype(np.float32) * np.float32(self.depth_scale)


def _strided_bytes(buffer, height: int, width: int, step: int, row_bytes: int) -> np.ndarray:
    """(height, row_bytes) uint8 view of a row-padded buffer; ValueError when the sizes do not fit."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if step < row_bytes:
        raise ValueError(f"row step {step} is smaller than the {row_bytes} bytes of one row")
    try:
        flat = np.frombuffer(buffer, dtype=np.uint8)  # zero copy for bytes, array.array, ndarray, memoryview
    except (TypeError, ValueError):  # e.g. a list of ints: one copy
        flat = np.asarray(buffer, dtype=np.uint8).reshape(-1)
    needed = step * (height - 1) + row_bytes
    if flat.size < needed:
        raise ValueError(f"image buffer holds {flat.size} bytes, {needed} needed for {width}x{height} "
                         f"with step {step}")
    # Zero copy: the same memory seen with explicit row strides (row padding skipped).
    return np.lib.stride_tricks.as_strided(flat, shape=(height, row_bytes), strides=(step, 1),
                                           writeable=False)


def rgb_view(buffer, height: int, width: int, step: int, encoding: str = "rgb8") -> np.ndarray:
    """Zero-copy (H, W, 3) uint8 RGB view of a raw image buffer (e.g. ``sensor_msgs/Image.data``).

    ``rgb8`` is a plain strided view. ``bgr8``/``bgra8``/``rgba8`` are still views (channel order
    reversed or alpha skipped by strides), so their last axis is not contiguous; call
    ``np.ascontiguousarray`` if a consumer needs that. Raises ValueError for an unknown encoding or a
    buffer too small for the declared size. The view is read-only.
    """
    if encoding not in COLOR_ENCODINGS:
        raise ValueError(f"unsupported colour encoding {encoding!r}; "
                         f"expected one of {sorted(COLOR_ENCODINGS)}")
    channels, reverse = COLOR_ENCODINGS[encoding]
    rows = _strided_bytes(buffer, height, width, step, width * channels)
    pixels = rows.reshape(height, width, channels)
    return pixels[:, :, 2::-1] if reverse else pixels[:, :, :3]


def depth_view(buffer, height: int, width: int, step: int, encoding: str = "16UC1",
               is_bigendian: bool = False) -> tuple[np.ndarray, float]:
    """Zero-copy (H, W) depth view of a raw buffer and its metres-per-unit scale.

    ``16UC1``/``mono16`` -> uint16 millimetres (scale 0.001); ``32FC1`` -> float32 metres (scale 1.0).
    A big-endian buffer is byte-swapped into a new native array (the only case that copies).
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"unsupported depth encoding {encoding!r}; "
                         f"expected one of {sorted(DEPTH_ENCODINGS)}")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    if step % dtype.itemsize:
        raise ValueError(f"row step {step} is not a multiple of the {encoding} item size {dtype.itemsize}")
    rows = _strided_bytes(buffer, height, width, step, width * dtype.itemsize)
    depth = rows.view(dtype.newbyteorder(">") if is_bigendian else dtype)
    if is_bigendian:
        depth = depth.astype(dtype)
    return depth, scale
