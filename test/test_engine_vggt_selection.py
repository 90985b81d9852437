# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The monocular frame-selection route: VGGT point maps (shared aggregator) -> space_aware_points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.selection import make_selector, uniform_indices
from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.engine.vggt_selection import (
    MonocularFallbackSelector,
    VGGTPointPredictor,
    load_point_head,
    make_vggt_points_selector,
    with_vggt_route,
)
from spatial_mllm_ros.model.loading import index_checkpoint
from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.model.vggt import SPATIAL_MLLM_PREFIX, VGGTConfig, load_vggt, predict_world_points

SIZE = 112  # VGGT input side in most tests (upstream's 518 costs seconds per call here)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Spatial-MLLM checkpoint (with VGGT heads) and the model loaded WITHOUT its heads."""
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny")
    model = SpatialMLLMForConditionalGeneration.from_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def monocular_frames():
    """16 RGB-only frames of a synthetic room scan (depth, K and pose dropped)."""
    scan = make_room_scan(num_frames=16, width=70, height=56)
    return [Frame(stamp=f.stamp, camera_id="mono", rgb=f.rgb) for f in scan]


def test_fixture_world_points_through_the_predictor(fixtures_dir):
    folder = fixtures_dir / "vggt_heads_tiny"
    images = np.load(folder / "inputs.npz")["images"][0]  # [4, 3, 84, 112], integers / 255
    frames = np.round(images.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    expected = dict(np.load(folder / "outputs.npz"))
    # 84x112 at target_size 112 is already a patch multiple: no resize, the fixture's own resolution.
    standalone = make_vggt_points_selector(vggt_dir=folder, target_size=112).predictor
    config = VGGTConfig.from_dict(json.loads((folder / "config.json").read_text()))
    shared = VGGTPointPredictor(load_vggt(folder, config, heads=()).aggregator,
                                load_point_head(folder, config, prefix=""), target_size=112)
    for predictor in (standalone, shared):
        points, conf = predictor(frames)
        assert points.shape == (4, 84, 112, 3) and conf.shape == (4, 84, 112)
        np.testing.assert_allclose(points, expected["world_points"][0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(conf, expected["world_points_conf"][0], rtol=1e-5, atol=1e-4)


def test_aggregator_is_shared_and_only_the_point_head_is_added(tiny):
    folder, model = tiny
    before = {id(p) for p in model.parameters()}
    selector = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE)
    predictor = selector.predictor
    aggregator = model.spatial_encoder.vggt_model.aggregator
    assert predictor.aggregator is aggregator
    shared_ptrs = {p.data_ptr() for p in predictor.aggregator.parameters()}
    assert shared_ptrs == {p.data_ptr() for p in aggregator.parameters()}
    # The model itself is unchanged (still no heads) and the predictor's own parameters are exactly the
    # checkpoint's point head, new tensors outside the model.
    assert model.spatial_encoder.vggt_model.point_head is None
    assert {id(p) for p in model.parameters()} == before
    head_keys = [k for k in index_checkpoint(folder) if k.startswith(SPATIAL_MLLM_PREFIX + "point_head.")]
    own = predictor.own_parameters()
    assert len(own) == len(head_keys) > 0
    model_ptrs = {p.data_ptr() for p in model.parameters()}
    assert not {p.data_ptr() for p in own} & model_ptrs
    assert all(p.dtype == next(aggregator.parameters()).dtype for p in own)


def test_shared_route_equals_a_standalone_vggt(tiny, monocular_frames):
    folder, model = tiny
    rgb = np.stack([f.rgb for f in monocular_frames[:5]])
    shared = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE).predictor
    points, conf = shared(rgb)
    assert points.shape == (5, 84, 112, 3) and points.dtype == np.float32
    config = model.spatial_encoder.vggt_model.config
    reference_model = load_vggt(folder, config, heads=("point",), prefix=SPATIAL_MLLM_PREFIX)
    reference = predict_world_points(reference_model, rgb, target_size=SIZE)
    np.testing.assert_allclose(points, reference[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(conf, reference[1], rtol=1e-6, atol=1e-6)
    # The Spatial-MLLM checkpoint read standalone, and a model loaded with its heads, agree too.
    for other in (make_vggt_points_selector(checkpoint_dir=folder, target_size=SIZE).predictor,
                  VGGTPointPredictor.from_spatial_mllm(
                      SpatialMLLMForConditionalGeneration.from_pretrained(folder, load_spatial_heads=True),
                      target_size=SIZE)):
        np.testing.assert_allclose(other(rgb)[0], points, rtol=1e-6, atol=1e-6)


def test_selection_on_monocular_frames(tiny, monocular_frames):
    folder, model = tiny
    selector = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE)
    selection = selector.select(monocular_frames, 6)
    assert selection.method == "space_aware_points"
    assert len(selection.indices) == 6 and selection.indices == sorted(set(selection.indices))
    assert all(0 <= i < len(monocular_frames) for i in selection.indices)
    assert 0.0 < selection.coverage <= 1.0 and selection.candidates == 16
    # Candidates are capped like upstream's 128, here at 8 evenly spaced frames.
    capped = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE, max_candidates=8)
    selection = capped.select(monocular_frames, 4)
    assert selection.candidates == 8 and set(selection.indices) <= set(uniform_indices(16, 8))
    assert selection.indices == sorted(selection.indices) and 0.0 < selection.coverage <= 1.0


def test_bfloat16_model_gives_float32_points(tiny, monocular_frames):
    folder, _ = tiny
    model = SpatialMLLMForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16)
    predictor = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE).predictor
    assert predictor.parameter.dtype == torch.bfloat16
    points, conf = predictor(np.stack([f.rgb for f in monocular_frames[:3]]))
    assert points.dtype == conf.dtype == np.float32 and np.isfinite(points).all() and (conf >= 1.0).all()


def test_checkpoint_without_point_head_is_refused(tiny, tmp_path):
    folder, model = tiny
    headless = make_tiny_checkpoint(tmp_path / "headless", preset="tiny", include_spatial_heads=False)
    with pytest.raises(ValueError, match=r"missing keys .*vggt_model\.point_head\."):
        make_vggt_points_selector(model=model, checkpoint_dir=headless)
    with pytest.raises(ValueError, match=r"missing keys .*point_head\."):
        make_vggt_points_selector(checkpoint_dir=headless)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make_vggt_points_selector(model=model)
    with pytest.raises(ValueError, match="needs a loaded Spatial-MLLM"):
        make_vggt_points_selector()
    with pytest.raises(ValueError, match="bad parameters"):
        make_vggt_points_selector(model=model, checkpoint_dir=folder, no_such_option=1)


def test_point_head_from_a_sharded_checkpoint(tiny, tmp_path):
    folder, model = tiny
    sharded = make_tiny_checkpoint(tmp_path / "sharded", preset="tiny", max_shard_bytes=400_000)
    assert (sharded / "model.safetensors.index.json").is_file()
    config = model.spatial_encoder.vggt_model.config
    one_file = load_point_head(folder, config).state_dict()
    shards = load_point_head(sharded, config).state_dict()
    assert one_file.keys() == shards.keys()
    assert all(torch.equal(one_file[k], shards[k]) for k in one_file)


def test_bad_frames_and_options_are_refused(tiny):
    folder, model = tiny
    predictor = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE).predictor
    with pytest.raises(ValueError, match="uint8"):
        predictor(np.zeros((2, 56, 70, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        predictor(np.zeros((0, 56, 70, 3), np.uint8))
    with pytest.raises(ValueError, match="frames_per_pass"):
        VGGTPointPredictor(predictor.aggregator, predictor.point_head, frames_per_pass=1)
    with pytest.raises(ValueError, match="patch size"):
        VGGTPointPredictor(predictor.aggregator, predictor.point_head, target_size=10)


def test_frames_per_pass_anchors_every_pass_on_frame_zero(tiny, monocular_frames):
    folder, model = tiny
    rgb = np.stack([f.rgb for f in monocular_frames[:6]])
    exact = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE).predictor
    passes = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE,
                                       frames_per_pass=3).predictor
    points, conf = passes(rgb)
    assert points.shape == (6, 84, 112, 3) and conf.shape == (6, 84, 112)
    # Pass 1 = frames 0-2; pass 2 = frames 0 (anchor, dropped), 3, 4; pass 3 = frames 0, 5.
    np.testing.assert_array_equal(points[:3], exact(rgb[:3])[0])
    np.testing.assert_array_equal(points[3:5], exact(rgb[[0, 3, 4]])[0][1:])
    np.testing.assert_array_equal(points[5:], exact(rgb[[0, 5]])[0][1:])
    np.testing.assert_array_equal(passes(rgb[:3])[0], exact(rgb[:3])[0])  # one pass when it fits


def test_monocular_fallback_of_the_geometric_selector(tiny, monocular_frames):
    folder, model = tiny
    vggt = make_vggt_points_selector(model=model, checkpoint_dir=folder, target_size=SIZE)
    selector = MonocularFallbackSelector(make_selector("space_aware"), vggt)
    selection = selector.select(monocular_frames, 4)
    assert selection.method.startswith("space_aware_points (monocular fallback from space_aware: ")
    assert "lack depth/pose/K" in selection.method
    assert len(selection.indices) == 4 and 0.0 < selection.coverage <= 1.0
    # RGB-D frames keep the metric route.
    rgbd = make_room_scan(num_frames=12, width=64, height=48)
    assert selector.select(rgbd, 4).method == "space_aware"
    # Without the VGGT route the core fallback stays visible.
    assert make_selector("space_aware").select(monocular_frames, 4).method.startswith("uniform (fallback")


def test_engine_hook_picks_the_route(tiny):
    folder, model = tiny
    geometric = make_selector("space_aware")
    assert with_vggt_route(geometric, "space_aware", model, folder) is geometric
    wrapped = with_vggt_route(geometric, "space_aware", model, folder, "vggt",
                              vggt_options={"target_size": SIZE})
    assert isinstance(wrapped, MonocularFallbackSelector) and wrapped.primary is geometric
    assert wrapped.monocular.predictor.target_size == SIZE
    points = with_vggt_route(make_selector("space_aware_points"), "space_aware_points", model, folder,
                             selector_params={"max_candidates": 64})
    assert points.max_candidates == 64 and points.predictor.target_size == 518
    assert points.predictor.aggregator is model.spatial_encoder.vggt_model.aggregator
    with pytest.raises(ValueError, match="unknown monocular_selector"):
        with_vggt_route(geometric, "space_aware", model, folder, "depth_anything")
