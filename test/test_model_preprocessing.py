# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Video pre-processing without torchvision: sizes, values, patch order, timing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spatial_mllm_ros.model.preprocessing import (
    VIDEO_MAX_PIXELS,
    prepare_video,
    resize_frames,
    second_per_grid_from_timestamps,
    smart_resize,
)


@pytest.fixture(scope="module")
def fixture_dir(fixtures_dir):
    return fixtures_dir / "spatial_mllm_tiny"


def test_fixture_patches_and_vggt_frames_are_bit_identical(fixture_dir):
    frames = np.load(fixture_dir / "source_frames.npz")["frames_uint8"]  # [4, 112, 140, 3]
    expected = np.load(fixture_dir / "inputs.npz")
    video = prepare_video(frames, [0.0, 0.5, 1.0, 1.5], min_pixels=56 * 56)
    assert torch.equal(video.pixel_values_videos, torch.from_numpy(expected["pixel_values_videos"]))
    assert torch.equal(video.video_tchw[0], torch.from_numpy(expected["video_tchw"][0]))
    assert video.video_grid_thw.tolist() == [[2, 8, 10]]
    assert video.num_video_tokens == 40
    assert video.second_per_grid_ts.dtype == torch.float32
    assert video.second_per_grid_ts.tolist() == [1.0]  # 2 frames per group at 2 fps, as upstream
    assert video.frame_size_hw == (112, 140)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((112, 140), (112, 140)),  # already multiples of 28 and within limits (min 56*56)
        ((1080, 1920), (560, 1008)),  # scaled down below 768*28*28, floored to 28
        ((100, 130), (112, 140)),  # rounded to the nearest multiple of 28
    ],
)
def test_smart_resize_small_min_pixels(size, expected):
    assert smart_resize(*size, min_pixels=56 * 56) == expected


def test_smart_resize_video_defaults():
    height, width = smart_resize(240, 320)  # 76800 px < 128*28*28: scaled up, ceiled to 28
    assert (height, width) == (280, 392)
    for size in [(480, 640), (720, 1280), (2160, 3840), (64, 900)]:
        height, width = smart_resize(*size)
        assert height % 28 == 0 and width % 28 == 0
        assert height * width <= VIDEO_MAX_PIXELS
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 3000)


def test_resize_is_antialiased_bicubic_close_to_pil():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    image = np.stack([(x * 0.7 + y * 0.3) % 256, (x * y / 300) % 256, 128 + 100 * np.sin(x / 15)], -1)
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    ours = resize_frames(image[None], 168, 224)[0]
    pil = np.asarray(Image.fromarray(image).resize((224, 168), Image.BICUBIC))
    assert ours.dtype == np.uint8 and ours.shape == (168, 224, 3)
    assert np.abs(ours.astype(int) - pil.astype(int)).mean() < 0.5
    assert np.array_equal(resize_frames(image[None], 240, 320)[0], image)  # same size: untouched


def test_resized_video_patches_follow_the_manual_recipe():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(4, 300, 400, 3), dtype=np.uint8)
    video = prepare_video(frames, [0, 1, 2, 3])
    height, width = video.frame_size_hw
    assert (height, width) == smart_resize(300, 400)
    tchw = video.video_tchw[0]
    assert tchw.shape == (4, 3, height, width) and float(tchw.min()) >= 0 and float(tchw.max()) <= 1
    grid_t, grid_h, grid_w = video.video_grid_thw[0].tolist()
    assert (grid_t, grid_h, grid_w) == (2, height // 14, width // 14)
    assert video.pixel_values_videos.shape == (grid_t * grid_h * grid_w, 1176)
    assert video.num_video_tokens == grid_t * grid_h * grid_w // 4
    # patch row of merged token (t=1, i=2, j=3), sub-patch (1, 0): rows 2*2+1, cols 3*2+0
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    normalised = (tchw - mean) / std
    row = ((1 * (grid_h // 2) + 2) * (grid_w // 2) + 3) * 4 + 2
    r, c = (2 * 2 + 1) * 14, (3 * 2) * 14
    expected = normalised[2:4, :, r : r + 14, c : c + 14].permute(1, 0, 2, 3).reshape(-1)
    assert torch.allclose(video.pixel_values_videos[row], expected, atol=1e-6)


def test_odd_frame_count_repeats_the_last_frame():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(3, 56, 56, 3), dtype=np.uint8)
    video = prepare_video(frames, [0.0, 1.0, 2.0], min_pixels=56 * 56)
    assert video.video_grid_thw.tolist() == [[2, 4, 4]]
    tchw = video.video_tchw[0]
    assert tchw.shape[0] == 4 and torch.equal(tchw[3], tchw[2])
    assert video.timestamps == [0.0, 1.0, 2.0, 2.0]


def test_second_per_grid_comes_from_real_timestamps():
    assert second_per_grid_from_timestamps([0.0, 0.5, 1.0, 1.5]) == 1.0  # 2 fps -> 2 / 2.0
    # unevenly spaced (coverage-selected) frames: group means 0.25, 2.25, 6.25
    assert second_per_grid_from_timestamps([0.0, 0.5, 2.0, 2.5, 6.0, 6.5]) == pytest.approx(3.0)
    assert second_per_grid_from_timestamps([3.0, 3.0]) == 1.0  # one frame (padded): upstream default
    frames = np.zeros((6, 56, 56, 3), np.uint8)
    video = prepare_video(frames, [10.0, 10.5, 12.0, 12.5, 16.0, 16.5], min_pixels=56 * 56)
    assert video.second_per_grid_ts.tolist() == [3.0]
    stamps = [10.0, 10.5, 12.0, 12.5, 16.0, 16.5]
    upstream_timing = prepare_video(frames, stamps, 56 * 56, second_per_grid=1.0)
    assert upstream_timing.second_per_grid_ts.tolist() == [1.0]


@pytest.mark.parametrize(
    ("frames", "stamps", "message"),
    [
        (np.zeros((2, 56, 56, 3), np.float32), [0, 1], "uint8"),
        (np.zeros((2, 56, 56), np.uint8), [0, 1], "RGB"),
        (np.zeros((2, 56, 56, 3), np.uint8), [0], "timestamps"),
        (np.zeros((2, 56, 56, 3), np.uint8), [1, 0], "time order"),
        (np.zeros((2, 56, 56, 3), np.uint8), [0, float("nan")], "finite"),
        ([np.zeros((56, 56, 3), np.uint8), np.zeros((28, 56, 3), np.uint8)], [0, 1], "same size"),
    ],
)
def test_bad_input_is_refused_with_a_reason(frames, stamps, message):
    with pytest.raises(ValueError, match=message):
        prepare_video(frames, stamps)
