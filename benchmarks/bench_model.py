# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the Spatial-MLLM model (``spatial-mllm-ros bench model``).

Figures, for the "tiny" and "mid" random checkpoints (written to a temporary directory by
``make_tiny_checkpoint``): load time (median, float32, page cache warm), the peak RSS increase while
loading in a fresh process (VmHWM minus VmRSS before ``from_pretrained``; bf16 and float32), and forward
time per stage on 16 frames at a small resolution (default 168x224 -> 384 video tokens): vision tower,
VGGT aggregator, connector, LLM prefill (video embeddings given) and decode (median ms per token with
the KV cache).

``--full-size`` (never in tests) writes a random REAL-size bf16 checkpoint (Qwen2.5-VL-3B + VGGT-1B
aggregator + connector, about 10 GB, shards of 4 GiB, VGGT heads left out so every byte is loaded) after
checking disk space and available memory, loads it in bf16 in a fresh process and reports the peak RSS
against the checkpoint bytes (target <= 1.2x), then deletes it (unless ``--keep-full-size``).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from spatial_mllm_ros.model import tiny
from spatial_mllm_ros.model.connector import drop_special_tokens
from spatial_mllm_ros.model.loading import (
    load_config,
    model_to_published_key,
    parameters_on_meta,
    write_sharded,
)
from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration
from spatial_mllm_ros.model.preprocessing import prepare_video
from spatial_mllm_ros.model.tokenizer import build_chat_input_ids, load_qwen_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30

LOAD_PROBE = textwrap.dedent(
    """
    import json, sys, time, torch
    from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration as M
    torch.set_num_threads(int(sys.argv[3]))
    def status(field):  # VmHWM/VmRSS of this process (ru_maxrss would include the parent's, kept across exec)
        with open("/proc/self/status") as handle:
            return next(int(l.split()[1]) * 1024 for l in handle if l.startswith(field + ":"))
    before = status("VmRSS")
    started = time.perf_counter()
    model = M.from_pretrained(sys.argv[1], dtype=sys.argv[2])
    seconds = time.perf_counter() - started
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"seconds": seconds, "peak": status("VmHWM"), "before": before,
                      "after": status("VmRSS"), "param_bytes": params}))
    """
)


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=16, help="video frames (default 16)")
    parser.add_argument(
        "--height", type=int, default=168, help="frame height after resizing (multiple of 28)"
    )
    parser.add_argument("--width", type=int, default=224, help="frame width after resizing (multiple of 28)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per stage")
    parser.add_argument("--decode-tokens", type=int, default=16, help="decode steps timed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--presets", default="tiny,mid", help="comma-separated presets to time")
    parser.add_argument(
        "--full-size", action="store_true", help="also write + load a real-size bf16 checkpoint"
    )
    parser.add_argument("--full-size-dir", default=None, help="where to write it (default: a temp dir)")
    parser.add_argument(
        "--keep-full-size", action="store_true", help="do not delete the real-size checkpoint"
    )


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function`` after one untimed warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def probe_load(model_dir: Path, dtype: str, threads: int) -> dict:
    """Load in a fresh process; peak RSS, RSS before, load seconds, parameter bytes."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, str(model_dir), dtype, str(threads)],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def checkpoint_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))


def stage_times(model, args, repeats: int, decode_tokens: int) -> dict[str, float]:
    """Per-stage forward times (ms) on one synthetic video."""
    frames = np.random.default_rng(0).integers(
        0, 256, size=(args.frames, args.height, args.width, 3), dtype=np.uint8
    )
    video = prepare_video(frames, np.arange(args.frames) * 0.5, max_pixels=args.height * args.width)
    tokenizer = load_qwen_tokenizer()
    ids = torch.tensor(
        [build_chat_input_ids(tokenizer, "How many chairs are in the room?", video.num_video_tokens)]
    )
    grid = video.video_grid_thw
    images = video.video_tchw[0][None]
    figures: dict[str, float] = {"video_tokens": video.num_video_tokens, "prompt_tokens": ids.shape[1]}
    with torch.inference_mode():
        figures["vision_tower_ms"] = 1e3 * median_seconds(
            lambda: model.get_video_embeds(video.pixel_values_videos, grid), repeats
        )
        figures["vggt_aggregator_ms"] = 1e3 * median_seconds(lambda: model.spatial_encoder(images), repeats)
        layers, patch_start = model.spatial_encoder(images)
        patches = drop_special_tokens(layers[-1][0], patch_start)
        del layers
        thw = tuple(grid[0].tolist())
        figures["connector_ms"] = 1e3 * median_seconds(lambda: model.connector(patches, thw), repeats)
        fused = model.get_fused_video_embeds(video.pixel_values_videos, grid, video.video_tchw)
        prefill_inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "video_grid_thw": grid,
            "second_per_grid_ts": video.second_per_grid_ts,
            "fused_video_embeds": fused,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        figures["llm_prefill_ms"] = 1e3 * median_seconds(lambda: model(**prefill_inputs), repeats)
        output = model(**prefill_inputs)
        cache, length = output.past_key_values, ids.shape[1]
        token = output.logits[:, -1:].argmax(-1)
        step_times = []
        for _ in range(decode_tokens):
            length += 1
            started = time.perf_counter()
            output = model(
                input_ids=token,
                past_key_values=cache,
                attention_mask=torch.ones(1, length, dtype=torch.long),
                use_cache=True,
            )  # fmt: skip
            step_times.append(time.perf_counter() - started)
            cache, token = output.past_key_values, output.logits[:, -1:].argmax(-1)
        figures["decode_ms_per_token_median"] = 1e3 * statistics.median(step_times[1:] or step_times)
    return figures


def full_size(args, threads: int) -> dict[str, float]:
    """Write a random real-size bf16 checkpoint, load it in a fresh process, report peak RSS vs bytes."""
    directory = Path(args.full_size_dir or tempfile.mkdtemp(prefix="spatial_mllm_full_"))
    directory.mkdir(parents=True, exist_ok=True)
    config_dict = tiny.preset_config("full")
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2))
    (directory / "generation_config.json").write_text(json.dumps(tiny.generation_config_dict()))
    with parameters_on_meta():
        skeleton = SpatialMLLMForConditionalGeneration(load_config(directory))
    shapes = {
        model_to_published_key(name): tuple(tensor.shape)
        for name, tensor in skeleton.state_dict().items()
        if name != "lm_head.weight"
    }
    del skeleton
    total = sum(np.prod(shape, dtype=np.int64) * 2 for shape in shapes.values())
    free_disk = shutil.disk_usage(directory).free
    if free_disk < 1.05 * total + GIB:
        raise SystemExit(
            f"--full-size needs {total / 1e9:.1f} GB on disk at {directory}, {free_disk / 1e9:.1f} free"
        )
    with open("/proc/meminfo") as handle:
        available = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    if available < 1.3 * total + 2 * GIB:
        raise SystemExit(
            f"--full-size needs ~{1.3 * total / 1e9:.1f} GB of free memory, {available / 1e9:.1f} available"
        )
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    specs = [(name, torch.bfloat16, shape) for name, shape in sorted(shapes.items())]

    def random_tensor(name: str) -> torch.Tensor:
        return torch.empty(shapes[name], dtype=torch.bfloat16).normal_(0, 0.02, generator=generator)

    write_sharded(directory, specs, random_tensor, max_shard_bytes=4 * GIB)
    write_s = time.perf_counter() - started
    try:
        probe = probe_load(directory, "bfloat16", threads)
    finally:
        if not args.keep_full_size:
            shutil.rmtree(directory, ignore_errors=True)
    size = checkpoint_bytes(directory) if args.keep_full_size else total
    return {
        "full_checkpoint_gb": size / 1e9,
        "full_write_s": write_s,
        "full_load_s": probe["seconds"],
        "full_param_gb": probe["param_bytes"] / 1e9,
        "full_load_peak_rss_gb": probe["peak"] / 1e9,
        "full_load_peak_rss_over_checkpoint_ratio": probe["peak"] / size,
        "full_load_rss_increase_over_checkpoint_ratio": (probe["peak"] - probe["before"]) / size,
    }


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    repeats = 1 if args.quick else args.repeats
    decode_tokens = 4 if args.quick else args.decode_tokens
    figures: dict[str, float | str] = {"torch_threads": threads}
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            model_dir = tiny.make_tiny_checkpoint(Path(tmp) / preset, preset=preset, seed=0)
            size = checkpoint_bytes(model_dir)
            figures[f"{preset}_checkpoint_mb"] = size / 1e6
            figures[f"{preset}_load_s_median"] = median_seconds(
                lambda d=model_dir: SpatialMLLMForConditionalGeneration.from_pretrained(d), repeats
            )
            for dtype in ("bfloat16", "float32"):
                probe = probe_load(model_dir, dtype, threads)
                figures[f"{preset}_load_{dtype}_rss_increase_mb"] = (probe["peak"] - probe["before"]) / 1e6
                figures[f"{preset}_load_{dtype}_param_mb"] = probe["param_bytes"] / 1e6
            model = SpatialMLLMForConditionalGeneration.from_pretrained(model_dir)
            for name, value in stage_times(model, args, repeats, decode_tokens).items():
                figures[f"{preset}_{name}"] = value
            del model
    if args.full_size:
        figures.update(full_size(args, threads))
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}
