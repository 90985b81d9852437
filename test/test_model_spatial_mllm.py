# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Spatial-MLLM against the published implementation's outputs (fixture spatial_mllm_tiny)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

torch.set_num_threads(1)

LOGITS_ATOL = 1e-3  # logits reach ~47 in magnitude
ACTIVATION_ATOL = 1e-4


@pytest.fixture(scope="module")
def fixture_dir(fixtures_dir):
    return fixtures_dir / "spatial_mllm_tiny"


@pytest.fixture(scope="module")
def model(fixture_dir):
    return SpatialMLLMForConditionalGeneration.from_pretrained(fixture_dir)


@pytest.fixture(scope="module")
def inputs(fixture_dir):
    data = np.load(fixture_dir / "inputs.npz")
    tensors = {key: torch.from_numpy(data[key]) for key in data.files}
    tensors["video_tchw"] = [tensors["video_tchw"][0]]
    return tensors


@pytest.fixture(scope="module")
def outputs(fixture_dir):
    data = np.load(fixture_dir / "outputs.npz")
    return {key: torch.from_numpy(data[key]) for key in data.files}


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def test_fixture_checkpoint_loads_as_published(model):
    assert model.config.model_type == "spatial-mllm"
    assert model.dtype == torch.float32
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    # tied lm_head, VGGT heads not built
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert not any("_head" in name for name, _ in model.spatial_encoder.named_parameters())
    assert model.generation_config.eos_token_id == 1002


def test_vision_tower_matches(model, inputs, outputs):
    with torch.no_grad():
        video_embeds = model.get_video_embeds(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    assert video_embeds.shape == (40, 64)
    assert max_diff(video_embeds, outputs["video_embeds"]) <= ACTIVATION_ATOL


def test_connector_merge_and_projection_match(model, inputs, outputs):
    last_layer = outputs["spatial_encoder_layer_03"][:, 5:]  # [T, P, 2C]
    merged = model.connector.merge(last_layer, (2, 8, 10))
    assert torch.equal(merged, outputs["connector_merged_spatial"])
    with torch.no_grad():
        projected = model.connector.project(merged)
        spatial = model.get_spatial_embeds(inputs["video_tchw"], inputs["video_grid_thw"])
    assert max_diff(projected, outputs["connector_spatial_projected"]) <= ACTIVATION_ATOL
    assert max_diff(spatial, outputs["connector_spatial_projected"]) <= ACTIVATION_ATOL


def test_fused_video_embeds_match(model, inputs, outputs):
    with torch.no_grad():
        fused = model.get_fused_video_embeds(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], inputs["video_tchw"]
        )
    assert fused.shape == (40, 64)
    assert max_diff(fused, outputs["fused_embeds"]) <= ACTIVATION_ATOL


def test_rope_index_matches(model, inputs, outputs):
    positions, deltas = model.get_rope_index(
        inputs["input_ids"],
        None,
        inputs["video_grid_thw"],
        inputs["second_per_grid_ts"],
        inputs["attention_mask"],
    )
    assert torch.equal(positions, outputs["position_ids"])
    assert torch.equal(deltas, outputs["rope_deltas"])


def test_forward_logits_and_hidden_states_match(model, inputs, outputs):
    with torch.no_grad():
        result = model(**inputs, use_cache=False, output_hidden_states=True)
    assert result.logits.shape == (1, 71, 1024)
    assert max_diff(result.logits, outputs["logits"]) <= LOGITS_ATOL
    assert max_diff(result.hidden_states[0], outputs["inputs_embeds"]) <= ACTIVATION_ATOL
    assert max_diff(result.hidden_states[-1], outputs["final_hidden"]) <= ACTIVATION_ATOL
    assert torch.equal(result.logits.topk(16, dim=-1).indices, outputs["logits_topk_indices"])


def test_greedy_generation_matches(model, inputs, outputs):
    with torch.no_grad():
        generated = model.generate(
            **inputs,
            max_new_tokens=8,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=1000,
            output_logits=True,
            return_dict_in_generate=True,
        )
    new_tokens = generated.sequences[:, 71:]
    assert new_tokens.tolist() == [[687, 556, 987, 400, 585, 524, 347, 477]]
    assert torch.equal(generated.sequences, outputs["generated_sequence"])
    step_logits = torch.cat(generated.logits, dim=0)  # [8, vocab]
    assert max_diff(step_logits, outputs["generate_step_logits"]) <= LOGITS_ATOL


def test_fused_video_embeds_path_equals_pixel_path(model, inputs, outputs):
    fused = outputs["fused_embeds"]
    text_inputs = {
        k: inputs[k] for k in ("input_ids", "attention_mask", "video_grid_thw", "second_per_grid_ts")
    }
    with torch.no_grad():
        result = model(**text_inputs, fused_video_embeds=fused, use_cache=False)
        generated = model.generate(**text_inputs, fused_video_embeds=fused, max_new_tokens=8, do_sample=False)
    assert max_diff(result.logits, outputs["logits"]) <= LOGITS_ATOL
    assert generated[0, 71:].tolist() == [687, 556, 987, 400, 585, 524, 347, 477]


def test_batched_left_padded_generation_equals_single(model, inputs, outputs):
    """Two prompts of different length in one left-padded batch give each prompt's own tokens."""
    ids = inputs["input_ids"][0]
    short = torch.cat([ids[:56], ids[59:]])  # 3 question tokens fewer
    fused = outputs["fused_embeds"]
    common = {
        "video_grid_thw": inputs["video_grid_thw"].repeat(2, 1),
        "second_per_grid_ts": torch.tensor([1.0, 1.0]),
    }
    pad = 1000
    batch_ids = torch.stack([ids, torch.cat([torch.full((3,), pad), short])])
    mask = torch.stack([torch.ones(71, dtype=torch.long), torch.cat([torch.zeros(3), torch.ones(68)]).long()])
    with torch.no_grad():
        batch = model.generate(
            input_ids=batch_ids,
            attention_mask=mask,
            fused_video_embeds=torch.cat([fused, fused]),
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=pad,
            **common,
        )
        alone = model.generate(
            input_ids=short[None],
            attention_mask=torch.ones(1, 68, dtype=torch.long),
            fused_video_embeds=fused,
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=torch.tensor([1.0]),
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=pad,
        )
    assert batch[0, 71:].tolist() == [687, 556, 987, 400, 585, 524]
    assert batch[1, 71:].tolist() == alone[0, 68:].tolist()


def test_rope_index_uses_real_timing_and_resumes_after_largest_position(model):
    """16 frames (8 temporal groups) at 1.25 s per group: t = floor(g * 1.25 * 2); text resumes at max + 1."""
    video_token, start, end = model.config.video_token_id, model.config.vision_start_token_id, 1004
    grid = torch.tensor([[8, 4, 4]])  # 8 groups of 2x2 merged tokens
    ids = torch.tensor([[5, start] + [video_token] * 32 + [end, 7, 8]])
    positions, deltas = model.get_rope_index(ids, None, grid, torch.tensor([1.25]))
    video = positions[:, 0, 2:34]
    temporal = video[0].view(8, 4)[:, 0] - 2
    assert temporal.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
    assert video[1].view(8, 2, 2)[0].tolist() == [[2, 2], [3, 3]]  # rows
    assert video[2].view(8, 2, 2)[0].tolist() == [[2, 3], [2, 3]]  # columns
    after = positions[0, 0, 34:].tolist()
    assert after == [20, 21, 22]  # largest video position (2 + 17) + 1
    assert deltas.item() == 22 + 1 - ids.shape[1]


def test_mismatched_video_tokens_are_refused(model, inputs, outputs):
    ids = inputs["input_ids"][:, :-5]
    ids = torch.cat([ids[:, :20], ids[:, 21:]], dim=1)  # one <|video_pad|> fewer
    with pytest.raises(ValueError, match="39 tokens"):
        model(
            input_ids=ids, fused_video_embeds=outputs["fused_embeds"], video_grid_thw=inputs["video_grid_thw"]
        )
    with pytest.raises(ValueError, match="video_tchw"):
        model(
            input_ids=inputs["input_ids"],
            pixel_values_videos=inputs["pixel_values_videos"],
            video_grid_thw=inputs["video_grid_thw"],
        )


def test_text_only_prompt_uses_plain_positions(model, inputs):
    ids = torch.cat([inputs["input_ids"][:, :14], inputs["input_ids"][:, 56:]], dim=1)  # no video block
    positions, deltas = model.get_rope_index(ids, attention_mask=torch.ones_like(ids))
    assert torch.equal(positions, torch.arange(ids.shape[1]).expand(3, 1, -1))
    assert deltas.item() == 0
    with torch.no_grad():
        generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4)
        step = model(input_ids=generated[:, :-1], use_cache=False)
    assert torch.equal(step.logits[:, ids.shape[1] - 1 :].argmax(-1), generated[:, ids.shape[1] :])


def test_image_input_is_fused_with_spatial_features_like_a_two_frame_video(model, inputs):
    image_token, start, end = model.config.image_token_id, model.config.vision_start_token_id, 1004
    ids = torch.tensor([[5, start] + [image_token] * 20 + [end, 7, 8]])
    pixels = inputs["pixel_values_videos"][:80]  # first temporal group: one 112x140 "image" of 2 frames
    image_tchw = [inputs["video_tchw"][0][:2]]
    grid = torch.tensor([[1, 8, 10]])
    positions, _ = model.get_rope_index(ids, image_grid_thw=grid)
    assert positions[0, 0, 2:22].tolist() == [2] * 20  # one temporal position
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, image_tchw=image_tchw).logits
        fused = model.get_fused_video_embeds(pixels, grid, image_tchw)
        video_ids = ids.masked_fill(ids == image_token, model.config.video_token_id)
        as_video = model(input_ids=video_ids, fused_video_embeds=fused, video_grid_thw=grid).logits
    assert torch.allclose(logits, as_video, atol=1e-5)
    with pytest.raises(ValueError, match="image_tchw"):
        model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid)


def test_spatial_encoder_layers_match(model, inputs, outputs):
    with torch.no_grad():
        layers, patch_start_idx = model.spatial_encoder(inputs["video_tchw"][0][None])
    assert patch_start_idx == int(outputs["spatial_patch_start_idx"][0]) == 5
    assert len(layers) == 4
    for index, layer in enumerate(layers):
        assert max_diff(layer[0], outputs[f"spatial_encoder_layer_{index:02d}"]) <= ACTIVATION_ATOL


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, LOGITS_ATOL), (torch.bfloat16, 3.0)])
def test_fixture_on_cuda(fixture_dir, inputs, outputs, dtype, atol):
    model = SpatialMLLMForConditionalGeneration.from_pretrained(fixture_dir, dtype=dtype, device="cuda")
    cuda_inputs = {
        k: v.cuda() if isinstance(v, torch.Tensor) else [t.cuda() for t in v] for k, v in inputs.items()
    }
    with torch.no_grad():
        logits = model(**cuda_inputs, use_cache=False).logits.float().cpu()
        generated = model.generate(**cuda_inputs, max_new_tokens=8, do_sample=False).cpu()
    assert max_diff(logits, outputs["logits"]) <= atol
    if dtype == torch.float32:
        assert generated[0, 71:].tolist() == [687, 556, 987, 400, 585, 524, 347, 477]
