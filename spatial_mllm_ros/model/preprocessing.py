# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Frames -> Spatial-MLLM video inputs, without torchvision or the transformers processor.

What Qwen2.5-VL's ``qwen_vl_utils`` + ``Qwen2VLImageProcessor`` do for a video, reproduced:

1. smart-resize: both sides rounded to multiples of 28 (patch 14 x merge 2) keeping the aspect ratio,
   the area brought within [min_pixels, max_pixels] (video defaults 128*28*28 .. 768*28*28 per frame);
2. resize with bicubic, antialiased interpolation on the uint8 frames, rounded and clamped back to uint8
   (this is what torchvision's ``resize(..., BICUBIC, antialias=True)`` does inside ``qwen_vl_utils``; we
   call ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``, the same kernel), skipped
   when the size already fits;
3. an odd number of frames is padded by repeating the last frame (temporal patch 2);
4. values: uint8 * (1/255) in float64 rounded to float32, then (x - CLIP mean) / CLIP std in float32;
5. patches: [T, 3, H, W] reshaped to (grid_t, 2, 3, grid_h/2, 2, 14, grid_w/2, 2, 14), permuted
   (0, 3, 6, 4, 7, 2, 1, 5, 8) and flattened to [grid_t*grid_h*grid_w, 3*2*14*14]: merged-token raster
   order, each merged token's 2x2 patches consecutive.

The same resized frames, divided by 255, are the VGGT input (``video_tchw``) so both patch grids match.
``second_per_grid_ts`` comes from the frames' real timestamps (see :func:`second_per_grid_from_timestamps`):
frames picked by a coverage selector are unevenly spaced, and Qwen's temporal positions depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
IMAGE_FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
VIDEO_MIN_PIXELS = 128 * IMAGE_FACTOR * IMAGE_FACTOR
VIDEO_MAX_PIXELS = 768 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_ASPECT_RATIO = 200
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VideoInputs:
    """Model inputs for one video (a batch of one)."""

    pixel_values_videos: Tensor  # [grid_t*grid_h*grid_w, 1176] float32
    video_grid_thw: Tensor  # [1, 3] int64
    second_per_grid_ts: Tensor  # [1] float32
    video_tchw: list[Tensor]  # one [T, 3, H, W] float32 in 0..1 (T even)
    num_video_tokens: int  # grid_t * grid_h/2 * grid_w/2 <|video_pad|> tokens
    timestamps: list[float]  # per frame after padding (seconds)
    frame_size_hw: tuple[int, int]  # resized (H, W)


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2.5-VL's size rule: multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size {height}x{width} is empty")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds {MAX_ASPECT_RATIO}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} exceeds max_pixels {max_pixels}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, height, width, 3] uint8, bicubic with antialias (rounded, clamped)."""
    if frames.shape[1:3] == (height, width):
        return frames
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    resized = torch.nn.functional.interpolate(
        tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )
    resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


def _normalisation_table() -> np.ndarray:
    """[3, 256] float32: value v of channel c -> (float32(v * (1/255)) - mean[c]) / std[c] in float32."""
    scaled = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None]
    return (scaled[None, :] - mean) / std


def second_per_grid_from_timestamps(
    timestamps: Sequence[float], temporal_patch_size: int = TEMPORAL_PATCH_SIZE
) -> float:
    """Seconds between consecutive temporal groups: the mean time per group of ``temporal_patch_size`` frames.

    Group time = mean timestamp of its frames; the value is (last group time - first group time) /
    (groups - 1), i.e. the real spacing Qwen's temporal positions should reflect (equal to
    ``temporal_patch_size / fps`` for evenly spaced frames). One group: its frames' spacing scaled to a
    group, or 1.0 (the upstream default) for a single frame. ``timestamps`` must be padded to a multiple
    of ``temporal_patch_size``.
    """
    stamps = np.asarray(timestamps, dtype=np.float64)
    groups = stamps.reshape(-1, temporal_patch_size).mean(axis=1)
    if len(groups) >= 2:
        return float((groups[-1] - groups[0]) / (len(groups) - 1))
    span = float(stamps[-1] - stamps[0])
    return span * temporal_patch_size / (temporal_patch_size - 1) if span > 0 else 1.0


def _validate(
    frames: np.ndarray | Sequence[np.ndarray], timestamps: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(frames, np.ndarray):
        if len(frames) == 0:
            raise ValueError("no frames given")
        shapes = {np.shape(f) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"all frames must have the same size, got {sorted(shapes)}")
        frames = np.stack(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3] RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    stamps = np.asarray(list(timestamps), dtype=np.float64)
    if stamps.shape != (frames.shape[0],):
        raise ValueError(f"got {stamps.size} timestamps for {frames.shape[0]} frames")
    if not np.all(np.isfinite(stamps)):
        raise ValueError("timestamps must be finite numbers (seconds)")
    if np.any(np.diff(stamps) < 0):
        raise ValueError("frames must be in time order (timestamps non-decreasing)")
    return frames, stamps


def prepare_video(
    frames: np.ndarray | Sequence[np.ndarray],
    timestamps: Sequence[float],
    min_pixels: int | None = None,
    max_pixels: int = VIDEO_MAX_PIXELS,
    second_per_grid: float | None = None,
) -> VideoInputs:
    """[T, H, W, 3] uint8 RGB frames (time order) + their timestamps in seconds -> :class:`VideoInputs`.

    ``min_pixels``/``max_pixels`` bound each frame's area after resizing (Qwen2.5-VL video defaults;
    ``min_pixels`` None means 128*28*28, lowered to ``max_pixels`` when that is smaller).
    ``second_per_grid`` overrides the timing taken from ``timestamps`` (upstream's evaluation scripts
    always get 1.0, i.e. frames assumed at 2 fps).
    Raises ValueError on malformed frames or timestamps.
    """
    frames, stamps = _validate(frames, timestamps)
    if min_pixels is None:
        min_pixels = min(VIDEO_MIN_PIXELS, max_pixels)
    height, width = smart_resize(
        frames.shape[1], frames.shape[2], min_pixels=min_pixels, max_pixels=max_pixels
    )
    frames = resize_frames(frames, height, width)
    if len(frames) % TEMPORAL_PATCH_SIZE:
        pad = TEMPORAL_PATCH_SIZE - len(frames) % TEMPORAL_PATCH_SIZE
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        stamps = np.concatenate([stamps, np.repeat(stamps[-1:], pad)])
    num_frames = len(frames)

    chw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    table = torch.from_numpy(_normalisation_table())  # [3, 256]
    normalised = torch.stack([table[c][chw[:, c].long()] for c in range(3)], dim=1)  # [T, 3, H, W] float32

    grid_t, grid_h, grid_w = num_frames // TEMPORAL_PATCH_SIZE, height // PATCH_SIZE, width // PATCH_SIZE
    patches = normalised.reshape(
        grid_t, TEMPORAL_PATCH_SIZE, 3,
        grid_h // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE,
        grid_w // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE,
    )  # fmt: skip
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(
        grid_t * grid_h * grid_w, 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE
    )
    video_tchw = chw.float() / 255.0  # [T, 3, H, W] in 0..1
    if second_per_grid is None:
        second_per_grid = second_per_grid_from_timestamps(stamps)
    elif not math.isfinite(second_per_grid) or second_per_grid < 0:
        raise ValueError(f"second_per_grid must be a finite number >= 0, got {second_per_grid}")
    return VideoInputs(
        pixel_values_videos=patches.contiguous(),
        video_grid_thw=torch.tensor([[grid_t, grid_h, grid_w]], dtype=torch.int64),
        second_per_grid_ts=torch.tensor([second_per_grid], dtype=torch.float32),
        video_tchw=[video_tchw],
        num_video_tokens=grid_t * (grid_h // MERGE_SIZE) * (grid_w // MERGE_SIZE),
        timestamps=[float(s) for s in stamps],
        frame_size_hw=(height, width),
    )
