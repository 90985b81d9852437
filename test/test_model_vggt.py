# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The VGGT spatial encoder against the published code's outputs (fixtures with tiny random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spatial_mllm_ros.model.vggt import VGGTAggregator, VGGTAggregatorConfig

ATOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _assert_close(
    actual: torch.Tensor | np.ndarray, expected: np.ndarray, name: str, atol: float = ATOL
) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= atol, f"{name}: max abs diff {diff:.3g} > {atol}"


@pytest.fixture(scope="module")
def aggregator_case(fixtures_dir):
    folder = fixtures_dir / "vggt_aggregator_tiny"
    config = VGGTAggregatorConfig.from_dict(json.loads((folder / "config.json").read_text())["aggregator"])
    state = {k.removeprefix("aggregator."): v for k, v in load_file(folder / "model.safetensors").items()}
    model = VGGTAggregator(config).eval()
    model.load_state_dict(state, strict=True)
    images = torch.from_numpy(np.load(folder / "inputs.npz")["images"])
    outputs = dict(np.load(folder / "outputs.npz"))
    return model, images, outputs


def test_aggregator_layers_match_fixture(aggregator_case):
    model, images, expected = aggregator_case
    with torch.no_grad():
        layers, patch_start_idx = model(images)
    assert patch_start_idx == int(expected["patch_start_idx"]) == 5
    assert len(layers) == int(expected["num_layers"]) == 2
    for i, layer in enumerate(layers):
        _assert_close(layer, expected[f"layer_{i:02d}"], f"layer_{i:02d}")


def test_dinov2_debug_tensors_match_fixture(aggregator_case):
    model, images, expected = aggregator_case
    batch, frames, _, height, width = images.shape
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    normalised = ((images - mean) / std).reshape(batch * frames, 3, height, width)
    num_patches = (height // 14) * (width // 14)
    with torch.no_grad():
        pos_embed = model.patch_embed.interpolate_pos_encoding(num_patches, height, width)
        patch_tokens = model.patch_embed(normalised)
    _assert_close(pos_embed, expected["debug_dinov2_pos_embed_resized"], "pos_embed_resized")
    _assert_close(
        patch_tokens.reshape(batch, frames, num_patches, -1),
        expected["debug_dinov2_patch_tokens"],
        "patch_tokens",
    )


def test_aggregator_rejects_bad_image_shapes(aggregator_case):
    model = aggregator_case[0]
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.zeros(1, 2, 3, 56, 80))
    with pytest.raises(ValueError, match=r"\[B, S, 3, H, W\]"):
        model(torch.zeros(2, 3, 56, 84))
