# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward annotation throughput on CPU: encoding once per frame set + batching vs naive, and Ray.

1. A 64-frame synthetic push trajectory scored in progress mode with the tiny and the mid-size
   random checkpoints, side by side: (a) the annotator's pattern, each frame set of up to
   ``max_frames`` frames encoded once and its prompts decoded as a batch, vs (b) the naive pattern,
   the same frame sets and prompts but one prompt per call with the feature cache off, so every
   query re-encodes its frames. Reported: seconds per trajectory, the ratio, trajectories per
   minute, and whether both patterns produced the same answers.
2. Labelling several bags with the tiny model: single process (torch on 2 threads) vs Ray Data with
   2 CPU workers of 1 thread each (one model per worker), bags per minute; Ray's start-up (cluster
   and actors, model loads) counts, as it would in a real run, and is also reported on its own,
   with the steady-state rate between the first and the last finished bag.
Frames are 112x112 model pixels (no up-scaling to Qwen's default minimum) and answers at most 8
tokens, so that the mid-size model's naive run fits a CPU benchmark.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--frames", type=int, default=64, help="frames per trajectory (default 64)")
    parser.add_argument("--presets", default="tiny,mid", help="checkpoint presets to compare")
    parser.add_argument("--size", type=int, default=112, help="frame width and height in pixels")
    parser.add_argument("--ray-bags", type=int, default=None,
                        help="bags in the Ray comparison (default 8, 4 with --quick)")
    parser.add_argument("--ray-frames", type=int, default=16, help="frames per bag in the Ray comparison")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")


def _engine_options(args):
    """Frames at exactly ``size`` x ``size`` model pixels (no up-scaling), short numeric answers."""
    pixels = args.size * args.size
    return {"selector": "uniform", "max_frames": 16, "max_new_tokens": 8, "max_pixels": pixels,
            "min_pixels": pixels}


def _time_scoring(annotator, frames, repeats):
    times, scores = [], None
    for _ in range(repeats):
        annotator.qa.cache.clear()  # every repetition encodes cold, as a new trajectory would
        started = time.perf_counter()
        scores = annotator.score(frames, "push the red box to the right edge of the table")
        times.append(time.perf_counter() - started)
    return statistics.median(times), scores


def _encoding_vs_naive(preset, root, args, figures):
    import torch

    from spatial_mllm_ros.engine import SpatialQA
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
    from spatial_mllm_ros.reward.annotator import RewardAnnotator
    from spatial_mllm_ros.reward.synthetic import push_trajectory

    torch.set_num_threads(2)
    checkpoint = make_tiny_checkpoint(root / preset, preset=preset)
    frames = push_trajectory(args.frames, width=args.size, height=args.size).frames
    repeats = 1 if args.quick else 3
    engine = _engine_options(args)
    batched_qa = SpatialQA(checkpoint, **engine)
    naive_qa = SpatialQA(checkpoint, cache_bytes=0, **engine)
    batched = RewardAnnotator(batched_qa)
    naive = RewardAnnotator(naive_qa, batch_queries=False)
    batched.score(frames[:4], "warm up")  # first-call costs (allocations, kernels) out of the timing
    naive.score(frames[:4], "warm up")
    naive_s, naive_scores = _time_scoring(naive, frames, 1)
    batched_s, batched_scores = _time_scoring(batched, frames, repeats)
    same = sum(a == b for a, b in zip(batched_scores.raw_answers, naive_scores.raw_answers, strict=True))
    figures[f"{preset}_frames_per_trajectory"] = len(frames)
    figures[f"{preset}_frame_pixels"] = f"{args.size}x{args.size}"
    figures[f"{preset}_batched_model_calls"] = batched_scores.model_calls
    figures[f"{preset}_naive_model_calls"] = naive_scores.model_calls
    figures[f"{preset}_batched_s_per_trajectory"] = round(batched_s, 3)
    figures[f"{preset}_naive_s_per_trajectory"] = round(naive_s, 3)
    figures[f"{preset}_naive_over_batched_ratio"] = round(naive_s / batched_s, 2)
    figures[f"{preset}_trajectories_per_min_cpu"] = round(60.0 / batched_s, 2)
    figures[f"{preset}_answers_identical_fraction"] = round(same / len(frames), 3)
    batched_qa.close()
    naive_qa.close()
    return checkpoint


def _ray_vs_single(checkpoint, root, args, figures):
    import ray
    import torch

    from spatial_mllm_ros.reward.label import LabelOptions, label_bags, load_annotator
    from spatial_mllm_ros.reward.ray_label import label_bags_ray
    from spatial_mllm_ros.reward.synthetic import write_push_bag

    count = args.ray_bags or (4 if args.quick else 8)
    bags = [write_push_bag(root / "bags" / f"episode_{i:02d}", args.ray_frames, width=args.size,
                           height=args.size, start_stamp=1000.0 + 100 * i) for i in range(count)]
    work = [(bag, bag.name) for bag in bags]
    options = LabelOptions(instruction="push the red box to the right edge of the table")

    torch.set_num_threads(2)
    started = time.perf_counter()
    engine = _engine_options(args)
    del engine["selector"]
    annotator = load_annotator(str(checkpoint), **engine)
    label_bags(annotator, work, root / "single.parquet", options, show_progress=False)
    single_s = time.perf_counter() - started
    annotator.qa.close()

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start_s = time.perf_counter() - started
    arrivals = []
    try:
        label_bags_ray(work, root / "ray.parquet", options, model_dir=str(checkpoint), num_workers=2,
                       engine_kwargs=engine, torch_threads=1, show_progress=False,
                       on_result=lambda result: arrivals.append((time.perf_counter(),
                                                                 result.info["finished_at"])))
    finally:
        ray.shutdown()
    ray_s = arrivals[-1][0] - started
    figures["ray_bags"] = len(bags)
    figures["ray_frames_per_bag"] = args.ray_frames
    figures["single_process_bags_per_min"] = round(60.0 * len(bags) / single_s, 2)
    figures["ray_2_workers_bags_per_min"] = round(60.0 * len(bags) / ray_s, 2)
    figures["ray_over_single_throughput_ratio"] = round(single_s / ray_s, 2)
    figures["ray_cluster_start_s"] = round(ray_start_s, 2)
    figures["ray_first_bag_after_s"] = round(arrivals[0][0] - started, 2)
    finished = sorted(worker_time for _, worker_time in arrivals)
    if len(finished) > 2:
        # once the workers are up and loaded: bags per minute between the first and the last bag
        # the WORKERS finished (driver-side arrivals come in bursts)
        figures["ray_2_workers_steady_bags_per_min"] = round(
            60.0 * (len(finished) - 1) / (finished[-1] - finished[0]), 2)


def run(args) -> dict:
    figures: dict = {}
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_reward_") as tmp:
        root = Path(tmp)
        checkpoints = {preset: _encoding_vs_naive(preset, root, args, figures) for preset in presets}
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                figures["ray_skipped"] = "ray is not installed"
            else:
                tiny = checkpoints.get("tiny")
                if tiny is None:
                    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

                    tiny = make_tiny_checkpoint(root / "tiny", preset="tiny")
                _ray_vs_single(tiny, root, args, figures)
    return figures
