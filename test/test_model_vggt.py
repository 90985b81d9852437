# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The VGGT spatial encoder against the published code's outputs (fixtures with tiny random weights)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spatial_mllm_ros.model.vggt import (
    SPATIAL_MLLM_PREFIX,
    VGGT,
    VGGTAggregator,
    VGGTAggregatorConfig,
    VGGTConfig,
    load_vggt,
    pose_encoding_to_extri_intri,
    predict_world_points,
    vggt_config_from_spatial_config,
)

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


def test_aggregator_keeps_only_the_layers_asked_for(aggregator_case):
    model, images, expected = aggregator_case
    with torch.no_grad():
        layers, _ = model(images, keep_layers=(-1,))
    assert len(layers) == 2 and layers[0] is None
    _assert_close(layers[1], expected["layer_01"], "kept last layer")


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


# ----------------------------------------------------------------------------------------------- heads


@pytest.fixture(scope="module")
def heads_case(fixtures_dir):
    folder = fixtures_dir / "vggt_heads_tiny"
    config = VGGTConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = load_vggt(folder / "model.safetensors", config)
    images = torch.from_numpy(np.load(folder / "inputs.npz")["images"])
    expected = dict(np.load(folder / "outputs.npz"))
    with torch.no_grad():
        predictions = model(images)
    return folder, config, model, images, expected, predictions


def test_heads_config_read_from_fixture(heads_case):
    _, config, model, *_ = heads_case
    assert config.aggregator.depth == 6 and config.aggregator.dinov2.depth == 2
    assert config.camera_head.trunk_depth == 2 and config.camera_head.num_heads == 4
    assert config.depth_head.features == 32 and config.point_head.out_channels == (16, 32, 64, 64)
    assert config.depth_head.intermediate_layer_idx == (1, 2, 4, 5)
    assert model.heads == ("camera", "depth", "point")
    # The track head is not built; its checkpoint keys are the only ones left out.
    assert model.ignored_checkpoint_keys
    assert all(k.startswith("track_head.") for k in model.ignored_checkpoint_keys)


def test_heads_aggregator_layers_match_fixture(heads_case):
    _, _, model, images, expected, _ = heads_case
    with torch.no_grad():
        layers, patch_start_idx = model.aggregator(images)
    assert patch_start_idx == int(expected["patch_start_idx"])
    for i, layer in enumerate(layers):
        _assert_close(layer, expected[f"aggregator_layer_{i:02d}"], f"aggregator_layer_{i:02d}")


def test_camera_head_matches_fixture(heads_case):
    *_, expected, predictions = heads_case
    _assert_close(predictions["pose_enc"], expected["pose_enc"], "pose_enc")
    assert len(predictions["pose_enc_list"]) == 4
    _assert_close(torch.stack(predictions["pose_enc_list"]), expected["pose_enc_list"], "pose_enc_list")


def test_depth_head_matches_fixture(heads_case):
    *_, expected, predictions = heads_case
    _assert_close(predictions["depth"], expected["depth"], "depth")
    _assert_close(predictions["depth_conf"], expected["depth_conf"], "depth_conf")


def test_point_head_matches_fixture(heads_case):
    *_, expected, predictions = heads_case
    points = predictions["world_points"].numpy().astype(np.float64)
    reference = expected["world_points"].astype(np.float64)
    assert points.shape == reference.shape == (1, 4, 84, 112, 3)

    # inv_log (sign * expm1|x|) amplifies float32 rounding: points reach ~160, where 1 ulp is 1.5e-5 and
    # a different thread count alone moves them by ~1e-4. Compare before the activation with atol 1e-4,
    # and the points themselves relatively.
    def log_space(y):
        return np.sign(y) * np.log1p(np.abs(y))

    _assert_close(log_space(points), log_space(reference), "world_points (pre-activation)")
    np.testing.assert_allclose(points, reference, rtol=1e-5, atol=1e-4)
    _assert_close(predictions["world_points_conf"], expected["world_points_conf"], "world_points_conf")


def test_extrinsics_intrinsics_match_fixture(heads_case):
    _, _, _, images, expected, predictions = heads_case
    extrinsics, intrinsics = pose_encoding_to_extri_intri(predictions["pose_enc"], images.shape[-2:])
    _assert_close(extrinsics, expected["extrinsics"], "extrinsics")
    # Focal lengths are ~70 px: compare relatively.
    np.testing.assert_allclose(intrinsics.numpy(), expected["intrinsics"], rtol=1e-5, atol=1e-4)
    # Decoding the fixture's own pose encoding reproduces its matrices.
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(expected["pose_enc"]), (84, 112))
    _assert_close(extrinsics, expected["extrinsics"], "extrinsics from fixture pose_enc", atol=1e-6)
    np.testing.assert_allclose(intrinsics.numpy(), expected["intrinsics"], rtol=1e-6)
    assert np.allclose(expected["intrinsics"][..., 0, 2], 56.0) and np.allclose(
        expected["intrinsics"][..., 1, 2], 42.0
    )


# --------------------------------------------------------------------------------------------- loading


def test_unrequested_heads_are_not_built(heads_case):
    folder, config, *_ = heads_case
    model = load_vggt(folder / "model.safetensors", config, heads=("point",))
    assert model.camera_head is None and model.depth_head is None and model.point_head is not None
    assert not any(k.startswith(("camera_head.", "depth_head.")) for k in model.state_dict())
    skipped = {k.split(".")[0] for k in model.ignored_checkpoint_keys}
    assert skipped == {"camera_head", "depth_head", "track_head"}
    aggregator_only = load_vggt(folder / "model.safetensors", config, heads=())
    assert all(k.startswith("aggregator.") for k in aggregator_only.state_dict())
    with pytest.raises(ValueError, match="unknown VGGT heads"):
        load_vggt(folder / "model.safetensors", config, heads=("track",))


def test_spatial_mllm_prefix_and_dtype(heads_case, tmp_path):
    folder, config, model, *_ = heads_case
    state = load_file(folder / "model.safetensors")
    # A Spatial-MLLM-style checkpoint: VGGT under a prefix, next to unrelated LLM keys.
    wrapped = {SPATIAL_MLLM_PREFIX + k: v for k, v in state.items()}
    wrapped["model.embed_tokens.weight"] = torch.zeros(4, 4)
    save_file(wrapped, tmp_path / "model.safetensors")
    loaded = load_vggt(tmp_path, config, heads=(), prefix=SPATIAL_MLLM_PREFIX, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in loaded.parameters())
    reference = model.aggregator.state_dict()
    for key, value in loaded.aggregator.state_dict().items():
        assert torch.equal(value, reference[key].to(torch.bfloat16)), key


def test_bad_checkpoints_are_refused_naming_the_key(heads_case, tmp_path):
    folder, config, *_ = heads_case
    state = load_file(folder / "model.safetensors")

    missing = dict(state)
    del missing["aggregator.frame_blocks.3.attn.q_norm.weight"]
    with pytest.raises(
        ValueError, match=r"missing keys \(1\): aggregator\.frame_blocks\.3\.attn\.q_norm\.weight"
    ):
        load_vggt(missing, config)

    wrong_shape = dict(state)
    wrong_shape["camera_head.embed_pose.weight"] = torch.zeros(128, 8)
    with pytest.raises(ValueError, match=r"shape mismatch \(1\): camera_head\.embed_pose\.weight \[128, 8\]"):
        load_vggt(wrong_shape, config)

    extra = dict(state)
    extra["aggregator.mystery"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): aggregator\.mystery"):
        load_vggt(extra, config)

    # The default (full-size) config cannot take the tiny weights: the error names a mismatched key.
    with pytest.raises(ValueError, match=r"shape mismatch .*aggregator\.camera_token \[1, 2, 1, 64\]"):
        load_vggt(folder / "model.safetensors", heads=())

    with pytest.raises(ValueError, match="no checkpoint key starts with the prefix 'spatial_encoder"):
        load_vggt(state, config, prefix=SPATIAL_MLLM_PREFIX)

    pickle_file = tmp_path / "pytorch_model.bin"
    pickle_file.write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle"):
        load_vggt(pickle_file, config)
    with pytest.raises(ValueError, match=r"pickle|safetensors"):
        load_vggt(tmp_path, config)
    with pytest.raises(ValueError, match="not found"):
        load_vggt(tmp_path / "nothing.safetensors", config)


def test_config_from_spatial_config(fixtures_dir):
    full = vggt_config_from_spatial_config({"img_size": 518, "patch_size": 14, "embed_dim": 1024})
    assert (
        full.aggregator.embed_dim == 1024 and full.aggregator.depth == 24 and full.aggregator.num_heads == 16
    )
    assert full.aggregator.dinov2.depth == 24 and full.aggregator.dinov2.embed_dim == 1024
    assert full.depth_head.features == 256 and full.depth_head.out_channels == (256, 512, 1024, 1024)
    assert full.point_head.intermediate_layer_idx == (4, 11, 17, 23)
    assert full.camera_head.trunk_depth == 4
    spatial_config = json.loads((fixtures_dir / "spatial_mllm_tiny" / "config.json").read_text())[
        "spatial_config"
    ]
    tiny = vggt_config_from_spatial_config(spatial_config)
    assert tiny.aggregator.embed_dim == 32 and tiny.aggregator.depth == 4 and tiny.aggregator.num_heads == 2
    assert tiny.aggregator.dinov2.depth == 1 and tiny.aggregator.dinov2.num_heads == 2
    assert tiny.camera_head.trunk_depth == 1 and tiny.camera_head.num_heads == 2
    assert tiny.depth_head.features == tiny.point_head.features == 16
    assert tiny.point_head.out_channels == (8, 16, 32, 32)
    assert tiny.depth_head.intermediate_layer_idx == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="embed_dim"):
        VGGTAggregatorConfig(embed_dim=64)


def test_predict_world_points_on_uint8_frames(heads_case):
    folder, config, *_ = heads_case
    model = load_vggt(folder / "model.safetensors", config, heads=("point",))
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 52, 80, 3), dtype=np.uint8)
    points, conf = predict_world_points(model, frames, target_size=112)
    # Width 80 -> 112; height 52 * 112 / 80 = 72.8 -> rounded to 70 (a multiple of 14).
    assert points.shape == (3, 70, 112, 3) and conf.shape == (3, 70, 112)
    assert points.dtype == np.float32 and np.isfinite(points).all() and (conf > 1.0).all()
    with pytest.raises(ValueError, match="uint8"):
        predict_world_points(model, frames.astype(np.float32))
    with pytest.raises(ValueError, match="'point' head"):
        predict_world_points(load_vggt(folder / "model.safetensors", config, heads=()), frames)


def test_chunked_dense_heads_and_unbatched_input(heads_case):
    folder, config, _, images, expected, _ = heads_case
    chunked = dataclasses.replace(
        config,
        depth_head=dataclasses.replace(config.depth_head, frames_chunk_size=3),
        point_head=dataclasses.replace(config.point_head, frames_chunk_size=1),
    )
    model = load_vggt(folder / "model.safetensors", chunked, heads=("depth", "point"))
    with torch.no_grad():
        predictions = model(images[0])  # [S, 3, H, W]: a batch of one is added
    assert set(predictions) == {"depth", "depth_conf", "world_points", "world_points_conf"}
    _assert_close(predictions["depth"], expected["depth"], "depth (chunks of 3 frames)")
    _assert_close(predictions["world_points_conf"], expected["world_points_conf"], "conf (chunks of 1)")


def test_bfloat16_aggregator_stays_close(heads_case):
    folder, config, model, images, *_ = heads_case
    bf16 = load_vggt(folder / "model.safetensors", config, heads=(), dtype=torch.bfloat16)
    with torch.no_grad():
        reference = model.aggregator(images)[0][-1]
        layer = bf16.aggregator(images.to(torch.bfloat16))[0][-1]
    assert layer.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(layer.float().flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99


def test_full_size_structure_on_meta_device():
    with torch.device("meta"):
        model = VGGT(VGGTConfig())

    def millions(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    assert millions(model.aggregator) == pytest.approx(909.11, abs=0.01)
    assert millions(model.aggregator.patch_embed) == pytest.approx(304.37, abs=0.01)  # DINOv2 ViT-L/14-reg
    assert millions(model.camera_head) == pytest.approx(216.17, abs=0.01)
    assert millions(model.depth_head) == pytest.approx(32.65, abs=0.01)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["aggregator.patch_embed.pos_embed"] == (1, 1370, 1024)
    assert shapes["aggregator.camera_token"] == (1, 2, 1, 1024)
    assert shapes["aggregator.register_token"] == (1, 2, 4, 1024)
    assert shapes["aggregator.global_blocks.23.attn.q_norm.weight"] == (64,)
    assert shapes["camera_head.poseLN_modulation.1.weight"] == (6144, 2048)
    assert shapes["depth_head.projects.3.weight"] == (1024, 2048, 1, 1)
    assert shapes["point_head.scratch.output_conv2.2.weight"] == (4, 32, 1, 1)


@pytest.mark.gpu
def test_heads_fixture_on_cuda(heads_case):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    folder, config, _, images, expected, _ = heads_case
    model = load_vggt(folder / "model.safetensors", config, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions would cost ~1e-3 relative accuracy
    try:
        with torch.no_grad():
            predictions = model(images.cuda())
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    _assert_close(predictions["pose_enc"].cpu(), expected["pose_enc"], "pose_enc (cuda)", atol=1e-3)
    _assert_close(predictions["depth_conf"].cpu(), expected["depth_conf"], "depth_conf (cuda)", atol=1e-3)
