# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Checkpoint loading: published format, dtypes, shards, refusals, heads, the tiny-checkpoint maker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spatial_mllm_ros import cli
from spatial_mllm_ros.model import tiny
from spatial_mllm_ros.model.loading import (
    model_to_published_key,
    parameters_on_meta,
    published_to_model_key,
    read_safetensors_header,
)
from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration
from spatial_mllm_ros.model.preprocessing import prepare_video
from spatial_mllm_ros.model.tokenizer import build_chat_input_ids, load_qwen_tokenizer

torch.set_num_threads(1)
HEADS = ("camera_head", "depth_head", "point_head", "track_head")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny.make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny", seed=3)


@pytest.fixture(scope="module")
def tiny_weights(tiny_dir) -> dict[str, torch.Tensor]:
    return load_file(tiny_dir / "model.safetensors")


def copy_checkpoint(source: Path, target: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        shutil.copy(source / name, target / name)
    if tensors is None:
        shutil.copy(source / "model.safetensors", target / "model.safetensors")
    else:
        save_file(tensors, target / "model.safetensors")
    return target


def test_tiny_checkpoint_is_in_the_published_format(tiny_dir, tiny_weights):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "spatial-mllm" and config["vocab_size"] == 151936
    assert "text_config" not in config and config["hidden_size"] == 16  # flat 4.51 layout
    assert set(config["connector_config"]) == {"connector_type", "spatial_embeds_layer_idx"}
    prefixes = {key.split(".")[0] for key in tiny_weights}
    assert prefixes == {"visual", "model", "spatial_encoder", "connector"}
    assert "lm_head.weight" not in tiny_weights  # tied
    assert tiny_weights["model.embed_tokens.weight"].shape == (151936, 16)
    assert any(key.startswith("spatial_encoder.vggt_model.camera_head.") for key in tiny_weights)
    assert {"connector.ln_q.weight", "connector.mlp.0.weight", "connector.mlp.2.bias"} <= set(tiny_weights)
    assert all(t.dtype == torch.bfloat16 for t in tiny_weights.values())
    total = sum((tiny_dir / name).stat().st_size for name in ("config.json", "model.safetensors"))
    assert total < 8_000_000  # a few MB


def test_meta_construction_only_affects_the_calling_thread():
    built = {}

    def build_elsewhere():
        built["other"] = torch.nn.Linear(3, 3)

    with parameters_on_meta():
        here = torch.nn.Linear(3, 3)
        thread = threading.Thread(target=build_elsewhere)
        thread.start()
        thread.join()
    assert here.weight.is_meta
    assert not built["other"].weight.is_meta
    assert not torch.nn.Linear(2, 2).weight.is_meta  # restored afterwards


def test_key_mapping_round_trips(tiny_weights):
    for key in tiny_weights:
        mapped = published_to_model_key(key)
        assert model_to_published_key(mapped) == key
    assert (
        published_to_model_key("visual.blocks.0.attn.qkv.weight") == "model.visual.blocks.0.attn.qkv.weight"
    )
    assert published_to_model_key("model.layers.1.mlp.up_proj.weight") == (
        "model.language_model.layers.1.mlp.up_proj.weight"
    )
    assert published_to_model_key("model.language_model.norm.weight") == "model.language_model.norm.weight"


def test_auto_dtype_follows_the_config(tiny_dir, fixtures_dir):
    assert SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir, dtype="auto").dtype == torch.bfloat16
    fixture = fixtures_dir / "spatial_mllm_tiny"
    assert SpatialMLLMForConditionalGeneration.from_pretrained(fixture, dtype="auto").dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, "float16"])
def test_loads_in_the_requested_dtype_with_file_values(tiny_dir, tiny_weights, dtype):
    model = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir, dtype=dtype)
    wanted = {"float16": torch.float16}.get(dtype, dtype)
    params = dict(model.named_parameters())
    assert all(p.dtype == wanted for p in params.values())
    assert not any(p.is_meta for p in params.values())
    embed = params["model.language_model.embed_tokens.weight"]
    assert torch.equal(embed.float(), tiny_weights["model.embed_tokens.weight"].to(wanted).float())
    assert model.lm_head.weight is model.get_input_embeddings().weight
    qkv = params["model.visual.blocks.1.attn.qkv.weight"]
    assert torch.equal(qkv, tiny_weights["visual.blocks.1.attn.qkv.weight"].to(wanted))


def test_unused_vggt_heads_are_not_loaded_unless_asked(tiny_dir, tiny_weights):
    model = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir)
    names = [name for name, _ in model.named_parameters()]
    assert not any(head in name for name in names for head in HEADS)
    head_keys = [k for k in tiny_weights if any(f"vggt_model.{h}." in k for h in HEADS)]
    non_head = {k: v for k, v in tiny_weights.items() if k not in head_keys}
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in non_head.values())

    with_heads = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir, load_spatial_heads=True)
    head_params = {
        n: p
        for n, p in with_heads.named_parameters()
        if n.startswith("spatial_encoder.vggt_model.camera_head.")
    }
    assert head_params
    for name, param in head_params.items():
        assert torch.equal(param, tiny_weights[name].float())


def test_sharded_checkpoint_loads_like_the_single_file(tiny_dir, tmp_path):
    sharded = tiny.make_tiny_checkpoint(
        tmp_path / "sharded", preset="tiny", seed=3, max_shard_bytes=1_500_000
    )
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and not (sharded / "model.safetensors").exists()
    single = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir).state_dict()
    loaded = SpatialMLLMForConditionalGeneration.from_pretrained(sharded).state_dict()
    assert single.keys() == loaded.keys()
    assert all(torch.equal(single[k], loaded[k]) for k in single)


def test_transformers5_key_names_are_accepted(tiny_dir, tiny_weights, tmp_path):
    renamed = {published_to_model_key(k): v for k, v in tiny_weights.items()}
    copy = copy_checkpoint(tiny_dir, tmp_path / "v5names", renamed)
    model = SpatialMLLMForConditionalGeneration.from_pretrained(copy)
    assert torch.equal(model.model.language_model.norm.weight, tiny_weights["model.norm.weight"].float())


def test_missing_unexpected_and_wrong_shape_keys_are_named(tiny_dir, tiny_weights, tmp_path):
    broken = dict(tiny_weights)
    del broken["model.layers.1.mlp.down_proj.weight"]
    broken["connector.extra.weight"] = torch.zeros(2)
    broken["visual.merger.ln_q.weight"] = torch.zeros(7, dtype=torch.bfloat16)
    copy = copy_checkpoint(tiny_dir, tmp_path / "broken", broken)
    with pytest.raises(ValueError) as error:
        SpatialMLLMForConditionalGeneration.from_pretrained(copy)
    message = str(error.value)
    assert "missing keys: model.layers.1.mlp.down_proj.weight" in message
    assert "unexpected keys: connector.extra.weight" in message
    assert "visual.merger.ln_q.weight (checkpoint [7], model [16])" in message


def test_pickle_only_directory_is_refused_without_unpickling(tiny_dir, tmp_path):
    target = tmp_path / "pickled"
    target.mkdir()
    shutil.copy(tiny_dir / "config.json", target / "config.json")
    (target / "pytorch_model.bin").write_bytes(b"not a pickle, and never opened")
    with pytest.raises(ValueError, match=r"pickle-based weight files \(pytorch_model.bin\).*refused"):
        SpatialMLLMForConditionalGeneration.from_pretrained(target)


def test_bad_directories_and_files_are_refused(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        SpatialMLLMForConditionalGeneration.from_pretrained(tmp_path / "nowhere")
    wrong_type = copy_checkpoint(tiny_dir, tmp_path / "qwen")
    config = json.loads((wrong_type / "config.json").read_text())
    config["model_type"] = "qwen2_5_vl"
    (wrong_type / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type is 'qwen2_5_vl'"):
        SpatialMLLMForConditionalGeneration.from_pretrained(wrong_type)
    truncated = copy_checkpoint(tiny_dir, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        SpatialMLLMForConditionalGeneration.from_pretrained(truncated)
    with pytest.raises(ValueError, match="unsupported dtype"):
        SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir, dtype="int8")


def test_own_safetensors_writer_is_readable_by_safetensors(tiny_dir, tiny_weights):
    header = read_safetensors_header(tiny_dir / "model.safetensors")
    assert header.keys() == tiny_weights.keys()
    assert all(tuple(header[k].shape) == tuple(v.shape) for k, v in tiny_weights.items())


def test_round_trip_make_load_generate(tiny_dir):
    model = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir)
    tokenizer = load_qwen_tokenizer()
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 90, 120, 3), dtype=np.uint8)
    video = prepare_video(frames, [0.0, 0.4, 1.5, 1.9, 3.0], max_pixels=56 * 84)
    ids = torch.tensor([build_chat_input_ids(tokenizer, "How many chairs?", video.num_video_tokens)])
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "video_grid_thw": video.video_grid_thw,
        "second_per_grid_ts": video.second_per_grid_ts,
    }
    with torch.no_grad():
        generated = model.generate(
            **inputs,
            pixel_values_videos=video.pixel_values_videos,
            video_tchw=video.video_tchw,
            max_new_tokens=5,
        )
        fused = model.get_fused_video_embeds(
            video.pixel_values_videos, video.video_grid_thw, video.video_tchw
        )
        cached = model.generate(**inputs, fused_video_embeds=fused, max_new_tokens=5)
    new_tokens = generated[0, ids.shape[1] :]
    assert len(new_tokens) == 5 and new_tokens.max() < 151936
    assert torch.equal(generated, cached)
    assert isinstance(tokenizer.decode(new_tokens.tolist()), str)

    bf16 = SpatialMLLMForConditionalGeneration.from_pretrained(tiny_dir, dtype="bfloat16")
    with torch.no_grad():
        bf16_out = bf16.generate(**inputs, fused_video_embeds=fused.bfloat16(), max_new_tokens=2)
    assert bf16_out.shape == (1, ids.shape[1] + 2)


def test_cli_writes_and_refuses_a_non_empty_directory(tmp_path, capsys):
    target = tmp_path / "cli"
    assert tiny.main([str(target), "--seed", "1"]) == 0
    assert (target / "model.safetensors").is_file()
    assert tiny.main([str(target)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["make-tiny-model", str(tmp_path / "via_cli"), "--preset", "tiny", "--seed", "2"]) == 0
    model = SpatialMLLMForConditionalGeneration.from_pretrained(tmp_path / "via_cli")
    assert model.config.text_config.vocab_size == 151936


@pytest.mark.slow
def test_bf16_load_never_holds_a_float32_copy(tmp_path):
    """Peak RSS while loading the mid preset in bf16 stays near the checkpoint size (fp32 would double it)."""
    mid = tiny.make_tiny_checkpoint(tmp_path / "mid", preset="mid", seed=0)
    checkpoint_bytes = (mid / "model.safetensors").stat().st_size
    script = textwrap.dedent(
        f"""
        import torch
        from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration as M
        torch.set_num_threads(1)
        def status(field):  # this process only (ru_maxrss keeps the parent's peak across exec)
            with open("/proc/self/status") as handle:
                return next(int(l.split()[1]) * 1024 for l in handle if l.startswith(field + ":"))
        before = status("VmRSS")
        model = M.from_pretrained({str(mid)!r}, dtype=torch.bfloat16)
        print(status("VmHWM") - before, sum(p.numel() * p.element_size() for p in model.parameters()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    peak_delta, param_bytes = (int(v) for v in result.stdout.split())
    assert param_bytes <= checkpoint_bytes  # heads skipped
    assert peak_delta < 1.3 * checkpoint_bytes, (peak_delta, checkpoint_bytes)
