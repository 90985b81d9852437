# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Small random Spatial-MLLM checkpoints in the published on-disk format (tests, demo, benchmarks).

No pretrained weights can be fetched here, yet the whole pipeline (tokenizer -> pre-processing -> model
-> answer parsing) must run end to end. A checkpoint made here is what a user downloads, only smaller:
``config.json`` in the flat transformers-4.51 layout with ``model_type`` "spatial-mllm",
``generation_config.json`` and ``model.safetensors`` with the 4.51 key names (``visual.*``, ``model.*``,
``spatial_encoder.vggt_model.*`` including the VGGT heads, ``connector.*``; ``lm_head`` tied). The
vocabulary is the REAL Qwen2.5 size (151936) so the real tokenizer's ids are valid. The VGGT sizes travel
in ``spatial_config["fidelity_tiny_vggt"]``, as in the reference fixtures.

Presets: "tiny" (a few MB, bf16 storage: text hidden 16) and "mid" (a mid-size random config for
benchmarks: text hidden 256 x 4 layers, vision 128 x 4, VGGT 128 x 4). ``preset_config("full")`` gives the
real Spatial-MLLM-v1.1 sizes (Qwen2.5-VL-3B + VGGT-1B aggregator) for the memory benchmark only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spatial_mllm_ros.core.atomic import write_json_atomic

from .loading import load_config, parameters_on_meta, resolve_dtype, save_published_weights

QWEN25_VOCAB_SIZE = 151936
PRESETS = ("tiny", "mid", "full")
STORAGE_DTYPES = {"tiny": "bfloat16", "mid": "bfloat16", "full": "bfloat16"}

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "mrope_section": [2, 1, 1]},
        "vision": {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                   "fullatt_block_indexes": [1]},
        "vggt": {"embed_dim": 16, "depth": 2, "num_heads": 2, "dinov2_depth": 1, "dpt_features": 8,
                 "dpt_out_channels": [8, 8, 16, 16], "dpt_layers": [0, 0, 1, 1], "camera_trunk_depth": 1},
    },
    "mid": {
        "text": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [8, 12, 12]},
        "vision": {"depth": 4, "hidden_size": 128, "intermediate_size": 512, "num_heads": 4,
                   "fullatt_block_indexes": [3]},
        "vggt": {"embed_dim": 128, "depth": 4, "num_heads": 4, "dinov2_depth": 2, "dpt_features": 32,
                 "dpt_out_channels": [16, 32, 64, 64], "dpt_layers": [0, 1, 2, 3], "camera_trunk_depth": 1},
    },
    "full": {  # Qwen2.5-VL-3B-Instruct + the VGGT-1B aggregator, as in Spatial-MLLM v1.1
        "text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                 "num_attention_heads": 16, "num_key_value_heads": 2, "mrope_section": [16, 24, 24]},
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "fullatt_block_indexes": [7, 15, 23, 31]},
        "vggt": None,
    },
}  # fmt: skip


def preset_config(preset: str) -> dict[str, Any]:
    """The flat, transformers-4.51-style ``config.json`` dict of a preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    sizes = _SIZES[preset]
    text, vision, vggt = sizes["text"], sizes["vision"], sizes["vggt"]
    spatial_config: dict[str, Any] = {"model_type": "vggt_spatial_encoder", "img_size": 518, "patch_size": 14}
    if vggt is None:
        spatial_config["embed_dim"] = 1024
    else:
        dim, heads = vggt["embed_dim"], vggt["num_heads"]
        dpt = {"features": vggt["dpt_features"], "out_channels": vggt["dpt_out_channels"],
               "intermediate_layer_idx": vggt["dpt_layers"]}  # fmt: skip
        spatial_config["embed_dim"] = dim
        spatial_config["fidelity_tiny_vggt"] = {
            "aggregator": {
                "img_size": 518, "patch_size": 14, "embed_dim": dim, "depth": vggt["depth"],
                "num_heads": heads, "mlp_ratio": 4.0, "num_register_tokens": 4, "qkv_bias": True,
                "proj_bias": True, "ffn_bias": True, "patch_embed": "dinov2_vitl14_reg",
                "aa_order": ["frame", "global"], "aa_block_size": 1, "qk_norm": True, "rope_freq": 100,
                "init_values": 0.01,
                "dinov2": {"embed_dim": dim, "depth": vggt["dinov2_depth"], "num_heads": heads,
                           "mlp_ratio": 4},
            },
            "camera_head": {"trunk_depth": vggt["camera_trunk_depth"], "num_heads": heads, "mlp_ratio": 4,
                            "init_values": 0.01},
            "dpt_head": dpt,
        }  # fmt: skip
    return {
        "architectures": ["SpatialMLLMForConditionalGeneration"],
        "model_type": "spatial-mllm",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "pad_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": text["hidden_size"],
        "intermediate_size": text["intermediate_size"],
        "initializer_range": 0.02,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "num_attention_heads": text["num_attention_heads"],
        "num_hidden_layers": text["num_hidden_layers"],
        "num_key_value_heads": text["num_key_value_heads"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"type": "mrope", "rope_type": "default", "mrope_section": text["mrope_section"]},
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": STORAGE_DTYPES[preset],
        "transformers_version": "4.51.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": QWEN25_VOCAB_SIZE,
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "vision_token_id": 151654,
        "vision_config": {
            "model_type": "qwen2_5_vl",
            "depth": vision["depth"],
            "hidden_act": "silu",
            "hidden_size": vision["hidden_size"],
            "intermediate_size": vision["intermediate_size"],
            "num_heads": vision["num_heads"],
            "in_chans": 3,
            "in_channels": 3,
            "out_hidden_size": text["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": vision["fullatt_block_indexes"],
        },
        "spatial_config": spatial_config,
        "connector_config": {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1},
    }


def generation_config_dict() -> dict[str, Any]:
    """Greedy decoding, Qwen2.5 stop ids."""
    return {
        "bos_token_id": 151643,
        "pad_token_id": 151643,
        "eos_token_id": [151645, 151643],
        "do_sample": False,
        "transformers_version": "4.51.3",
    }


def _draw(rng: np.random.Generator, module: nn.Module, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One parameter's random values (float32), by the kind of module that owns it."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)) and name == "weight":
        fan_in = shape[0] if isinstance(module, nn.ConvTranspose2d) else shape[1]
        fan_in *= math.prod(shape[2:])
        return rng.normal(0.0, 1.0 / math.sqrt(fan_in), shape)
    if isinstance(module, nn.Embedding):
        return rng.normal(0.0, 1.0, shape)
    if "Norm" in type(module).__name__:
        return (1.0 if name == "weight" else 0.0) + rng.normal(0.0, 0.1, shape)
    if name == "bias":
        return rng.normal(0.0, 0.1, shape)
    if name == "gamma":  # layer scale
        return rng.uniform(0.5, 1.0, shape)
    return rng.normal(0.0, 0.5, shape)  # free tokens / position embeddings


def random_state_dict(model: nn.Module, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Seeded random values for every parameter (module-traversal order; tied parameters once)."""
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            values = _draw(rng, module, name, tuple(param.shape)).astype(np.float32)
            key = f"{module_name}.{name}" if module_name else name
            state[key] = torch.from_numpy(values).to(dtype)
    # as in the reference fixture: a spread final norm keeps random greedy decoding from repeating a token
    norm_key = "model.language_model.norm.weight"
    norm = np.random.default_rng(seed + 5).normal(0.0, 1.0, tuple(state[norm_key].shape))
    state[norm_key] = torch.from_numpy(norm.astype(np.float32)).to(dtype)
    return state


def make_tiny_checkpoint(
    out_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    storage_dtype: torch.dtype | str | None = None,
    include_spatial_heads: bool = True,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write a random checkpoint of ``preset`` ("tiny" or "mid") to ``out_dir``; returns the directory.

    Weights are stored in ``storage_dtype`` (preset default bf16) and include the VGGT camera/depth/point
    heads like the published checkpoints (``include_spatial_heads``). ``max_shard_bytes`` writes shards +
    ``model.safetensors.index.json`` instead of one file.
    """
    from .modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

    if preset not in ("tiny", "mid"):
        raise ValueError(f"make_tiny_checkpoint builds 'tiny' or 'mid', not {preset!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_dict = preset_config(preset)
    dtype = resolve_dtype(storage_dtype or STORAGE_DTYPES[preset])
    config_dict["torch_dtype"] = str(dtype).removeprefix("torch.")
    write_json_atomic(out_dir / "config.json", config_dict, sort_keys=True)
    write_json_atomic(out_dir / "generation_config.json", generation_config_dict(), sort_keys=True)
    config = load_config(out_dir)
    with parameters_on_meta():
        model = SpatialMLLMForConditionalGeneration(config, load_spatial_heads=include_spatial_heads)
    state = random_state_dict(model, seed, dtype)
    save_published_weights(state, out_dir, max_shard_bytes=max_shard_bytes, tie_word_embeddings=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros make-tiny-model DIR [--preset tiny|mid] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="spatial-mllm-ros make-tiny-model",
        description="Write a small random Spatial-MLLM checkpoint in the published format (tests, demos).",
    )
    parser.add_argument(
        "out_dir", type=Path, help="directory to write (created; must be empty unless --force)"
    )
    parser.add_argument("--preset", choices=("tiny", "mid"), default="tiny", help="model size (default tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32", "float16"), default=None,
                        help="storage dtype (default bfloat16)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="write into a non-empty directory")
    args = parser.parse_args(argv)
    if args.out_dir.exists() and any(args.out_dir.iterdir()) and not args.force:
        print(f"make-tiny-model: {args.out_dir} is not empty (use --force to overwrite)", file=sys.stderr)
        return 2
    out = make_tiny_checkpoint(args.out_dir, preset=args.preset, seed=args.seed, storage_dtype=args.dtype)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {args.preset} Spatial-MLLM checkpoint to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
