# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``export-llm``: a stock Qwen2.5-VL checkpoint stock transformers loads, the visual graph, the feed JSON."""

import json

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.export_llm import FEED_FILE, VISUAL_FILE, stock_config, video_position_offsets


@pytest.fixture(scope="module")
def exported(fixtures_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("stock")
    source = fixtures_dir / "spatial_mllm_tiny"
    assert (
        cli_main(["export-llm", str(source), str(out), "--frames", "4", "--height", "112", "--width", "140"])
        == 0
    )
    return source, out


@pytest.fixture(scope="module")
def ours(exported):
    from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

    return SpatialMLLMForConditionalGeneration.from_pretrained(exported[0]).eval()


def test_stock_transformers_loads_it_without_missing_or_unexpected_keys(exported):
    _, out = exported
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set() and not info["error_msgs"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["architectures"] == [
        "Qwen2_5_VLForConditionalGeneration"
    ]
    assert config["tie_word_embeddings"] is True and "spatial_config" not in config
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    from spatial_mllm_ros.model.loading import read_safetensors_header

    names = set(read_safetensors_header(out / "model.safetensors"))
    assert not any(n.startswith(("spatial_encoder.", "connector.", "lm_head.")) for n in names)
    assert any(n.startswith("visual.blocks.") for n in names) and "model.embed_tokens.weight" in names
    assert (out / "generation_config.json").is_file()


def test_text_logits_and_vision_tower_equal_the_projects(exported, ours):
    source, out = exported
    stock = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    inputs = np.load(source / "inputs.npz")
    text_ids = torch.tensor([[1001, 948, 198, 610, 525, 264, 950, 847, 13, 1002, 198, 859, 723, 463]])
    with torch.no_grad():
        difference = (stock(input_ids=text_ids).logits - ours(input_ids=text_ids).logits).abs().max().item()
        assert difference <= 1e-4
        pixels = torch.from_numpy(inputs["pixel_values_videos"])
        grid = torch.from_numpy(inputs["video_grid_thw"])
        stock_video = torch.cat(stock.model.get_video_features(pixels, grid, return_dict=True).pooler_output)
        assert (stock_video - ours.get_video_embeds(pixels, grid)).abs().max().item() <= 1e-4


def test_visual_graph_and_feed_description(exported, ours, fixtures_dir):
    import onnxruntime

    source, out = exported
    inputs, outputs = np.load(source / "inputs.npz"), np.load(source / "outputs.npz")
    session = onnxruntime.InferenceSession(str(out / VISUAL_FILE), providers=["CPUExecutionProvider"])
    (fused,) = session.run(
        None, {"pixel_values_videos": inputs["pixel_values_videos"], "video_tchw": inputs["video_tchw"][0]}
    )
    assert np.abs(fused - outputs["fused_embeds"]).max() <= 1e-4
    feed = json.loads((out / FEED_FILE).read_text())
    assert feed["video_grid_thw"] == [2, 8, 10] and feed["max_multimodal_len"] == 40
    assert feed["visual_graph"]["output"]["fused_video_embeds"] == [40, 64]
    assert feed["prompt_embedding_table"]["replaces_token_id"] == 1007
    # the offsets written for second_per_grid 1.0 are the fixture's recorded M-RoPE positions of the video
    recorded = outputs["position_ids"][:, 0, 15:55] - 15
    assert np.array_equal(np.array(feed["mrope"]["video_position_offsets_second_per_grid_1"]), recorded)


def test_offsets_follow_real_timing_and_bad_input_is_refused(tmp_path):
    rows = video_position_offsets((4, 4, 4), 2, 1.25, 2.0)
    assert rows[0][::4] == [0, 2, 5, 7]  # floor(t * 1.25 * 2)
    assert (
        stock_config({"model_type": "spatial-mllm", "spatial_config": {}, "vision_config": {}})["model_type"]
        == "qwen2_5_vl"
    )
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert cli_main(["export-llm", str(tmp_path), str(tmp_path / "out")]) == 1
