# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward labelling on CPU: AV1 decoding, encoding once + batching vs naive, LeRobot datasets, Ray.

1. AV1 frames decoded per second (PyAV + libdav1d): the ``lerobot_v3_tiny`` fixture's 96x72 video,
   episode by episode as the labeller reads it, and a 300-frame 256x256 video encoded here (whose
   encoding rate, libsvtav1 with LeRobot's settings, is reported too).
2. A 64-frame synthetic push trajectory scored in progress mode with the tiny and the mid-size
   random checkpoints, side by side: (a) the annotator's pattern, each frame set of up to
   ``max_frames`` frames encoded once and its prompts decoded as a batch, vs (b) the naive pattern,
   the same frame sets and prompts but one prompt per call with the feature cache off, so every
   query re-encodes its frames. Reported: seconds per trajectory, the ratio, trajectories per
   minute, and whether both patterns produced the same answers.
3. Episodes labelled per minute on the fixture (3 episodes, 47 frames, every frame scored) with the
   tiny model, single process, model loaded beforehand; the whole labelled dataset is written.
4. Ray Data with 2 CPU workers of 1 thread each (one model per worker) vs one process with torch on
   2 threads, labelling the same LeRobot dataset (8 episodes of 16 frames, made from bags here) with
   the mid-size model (``--ray-preset``), so that model work, not scheduling, fills an episode.
   Both sides are measured the same way twice: with start-up included in both (model loads; for
   Ray also the cluster and actors) and with start-up excluded from both (steady state: episodes
   per minute between the first and the last finished episode).
Frames are 112x112 model pixels (no up-scaling to Qwen's default minimum) and answers at most 8
tokens, so that the mid-size model's naive run fits a CPU benchmark.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "test" / "data" / "fixtures" / "lerobot_v3_tiny"


def add_arguments(parser):
    parser.add_argument("--frames", type=int, default=64, help="frames per trajectory (default 64)")
    parser.add_argument("--presets", default="tiny,mid", help="checkpoint presets to compare")
    parser.add_argument("--size", type=int, default=112, help="frame width and height in pixels")
    parser.add_argument("--ray-episodes", type=int, default=None,
                        help="episodes in the Ray comparison (default 8, 4 with --quick)")
    parser.add_argument("--ray-frames", type=int, default=16, help="frames per episode in the Ray comparison")
    parser.add_argument("--ray-preset", default="mid", help="checkpoint preset of the Ray comparison")
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


def _decode_rate(root, args, figures):
    """AV1 frames decoded per second: the fixture's video and a larger one encoded here."""
    import numpy as np

    from spatial_mllm_ros.reward.lerobot import LeRobotSource
    from spatial_mllm_ros.reward.video import VideoWriter, decode_episode

    source = LeRobotSource(FIXTURE)
    repeats = 5 if args.quick else 20
    started = time.perf_counter()
    decoded = 0
    for _ in range(repeats):
        for index in range(len(source.episodes)):
            decoded += sum(1 for _ in source.episode_frames(index, None))
    figures["av1_decode_fixture_96x72_frames_per_s"] = round(decoded / (time.perf_counter() - started), 1)
    size, count = 256, 300
    video = root / "decode_256.mp4"
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    started = time.perf_counter()
    with VideoWriter(video, 30) as writer:
        for k in range(count):
            writer.add(np.roll(background, 2 * k, axis=1))
    figures["av1_encode_256x256_frames_per_s"] = round(count / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    decoded = sum(1 for _ in decode_episode(video, 0.0, count / 30, 30))
    figures["av1_decode_256x256_frames_per_s"] = round(decoded / (time.perf_counter() - started), 1)


def _episodes_per_minute(checkpoint, root, args, figures):
    """Single process, the fixture (3 episodes, 47 frames), tiny model already loaded."""
    import torch

    from spatial_mllm_ros.reward.episodes import LabelOptions, load_annotator
    from spatial_mllm_ros.reward.label import label_dataset

    torch.set_num_threads(2)
    engine = _engine_options(args)
    del engine["selector"]
    annotator = load_annotator(str(checkpoint), **engine)
    runs = []
    for repeat in range(1 if args.quick else 3):
        started = time.perf_counter()
        _, failures = label_dataset(annotator, [str(FIXTURE)], root / f"fixture_{repeat}", LabelOptions())
        runs.append(time.perf_counter() - started)
        assert not failures, failures
    annotator.qa.close()
    seconds = statistics.median(runs)
    figures["fixture_episodes"] = 3
    figures["fixture_s_per_dataset_tiny"] = round(seconds, 3)
    figures["fixture_episodes_per_min_tiny"] = round(60.0 * 3 / seconds, 1)


def _ray_vs_single(checkpoint, root, args, figures):
    """Ray Data with 2 one-thread workers vs one process on 2 threads, the same LeRobot dataset.

    Both sides are timed the same way twice: end to end with start-up (model loads; for Ray also
    the cluster and its actors) and in steady state, episodes per minute between the first and the
    last episode finished (start-up excluded on both sides).
    """
    import ray
    import torch

    from spatial_mllm_ros.reward.episodes import LabelOptions, load_annotator
    from spatial_mllm_ros.reward.label import label_dataset, label_episodes, prepare_run
    from spatial_mllm_ros.reward.ray_label import label_episodes_ray
    from spatial_mllm_ros.reward.synthetic import write_push_bag

    count = args.ray_episodes or (4 if args.quick else 8)
    bags = [write_push_bag(root / "bags" / f"episode_{i:02d}", args.ray_frames, width=args.size,
                           height=args.size, start_stamp=1000.0 + 100 * i) for i in range(count)]
    engine = _engine_options(args)
    del engine["selector"]
    torch.set_num_threads(2)
    annotator = load_annotator(str(checkpoint), **engine)
    dataset, failures = label_dataset(annotator, [str(bag) for bag in bags], root / "dataset",
                                      LabelOptions(instruction="push the red box", stride=4))
    annotator.qa.close()
    assert not failures, failures
    options = LabelOptions(instruction="push the red box to the right edge of the table")

    started = time.perf_counter()
    annotator = load_annotator(str(checkpoint), **engine)
    writer, options_run, units, source = prepare_run([str(dataset)], root / "single", options,
                                                     annotator.model_id)
    writer.prepare()
    single_done = []
    label_episodes(annotator, units, options_run, writer, source, show_progress=False,
                   on_done=lambda labels: single_done.append(time.perf_counter()))
    writer.finish(units)
    single_s = time.perf_counter() - started
    annotator.qa.close()

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_done = []
    try:
        writer, options_run, units, _ = prepare_run([str(dataset)], root / "ray", options, annotator.model_id)
        writer.prepare()
        label_episodes_ray(units, options_run, writer, model_dir=str(checkpoint), num_workers=2,
                           engine_kwargs=engine, torch_threads=1, show_progress=False,
                           on_done=lambda labels, finished_at: ray_done.append(finished_at))
        writer.finish(units)
        ray_s = time.perf_counter() - started
    finally:
        ray.shutdown()

    def steady(times):
        times = sorted(times)
        return 60.0 * (len(times) - 1) / (times[-1] - times[0])

    figures["ray_model_preset"] = args.ray_preset
    figures["ray_dataset_episodes"] = count
    figures["ray_dataset_frames_per_episode"] = args.ray_frames
    figures["single_2_threads_episodes_per_min_with_startup"] = round(60.0 * count / single_s, 1)
    figures["ray_2_workers_episodes_per_min_with_startup"] = round(60.0 * count / ray_s, 1)
    figures["ray_over_single_with_startup_ratio"] = round(single_s / ray_s, 2)
    figures["single_2_threads_episodes_per_min_steady"] = round(steady(single_done), 1)
    figures["ray_2_workers_episodes_per_min_steady"] = round(steady(ray_done), 1)
    figures["ray_over_single_steady_ratio"] = round(steady(ray_done) / steady(single_done), 2)


def run(args) -> dict:
    figures: dict = {}
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_reward_") as tmp:
        root = Path(tmp)
        _decode_rate(root, args, figures)
        checkpoints = {preset: _encoding_vs_naive(preset, root, args, figures) for preset in presets}
        tiny = checkpoints.get("tiny")
        if tiny is None:
            from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

            tiny = make_tiny_checkpoint(root / "tiny", preset="tiny")
        _episodes_per_minute(tiny, root, args, figures)
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                figures["ray_skipped"] = "ray is not installed"
            else:
                from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

                checkpoint = checkpoints.get(args.ray_preset) or make_tiny_checkpoint(
                    root / args.ray_preset, preset=args.ray_preset)
                _ray_vs_single(checkpoint, root, args, figures)
    return figures
