# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Replay-evaluation throughput: frames/s read from a rosbag2 scene, questions/min answered and scored.

A 300-frame synthetic scene (bag.scene, recorded like a RealSense robot: poses only through tf) is
evaluated end to end with the tiny random checkpoint, as ``spatial-mllm-ros eval`` would (reading,
candidate sampling, selection, asking, scoring, result files, report). Side by side in one run: the
reader on that scene recorded as 12 split mcap files with tf poses versus one mcap file with a
PoseStamped topic (repeats interleaved). And the official scorer on 10,000 predictions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--frames", type=int, default=300, help="frames in the synthetic scene")
    parser.add_argument("--max-frames", type=int, default=16, help="frames shown to the model")
    parser.add_argument("--questions", type=int, default=0, help="only the first N questions (0 = all)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the batched run")


def _predictions(count: int) -> list[dict]:
    """Rows as a VSI-Bench predictions file holds them, every task, mixed answer forms."""
    import numpy as np

    from spatial_mllm_ros.core.prompts import MULTIPLE_CHOICE_TASK_TYPES, NUMERIC_TASK_TYPES

    rng = np.random.default_rng(0)
    tasks = list(MULTIPLE_CHOICE_TASK_TYPES) + list(NUMERIC_TASK_TYPES)
    rows = []
    for i in range(count):
        task = tasks[i % len(tasks)]
        if task in MULTIPLE_CHOICE_TASK_TYPES:
            truth = "ABCD"[int(rng.integers(4))]
            prediction = ["B", "The answer is C", "(A)", "d."][i % 4]
        else:
            truth = f"{rng.uniform(0.5, 300):.2f}"
            prediction = [f"{float(truth) * rng.uniform(0.4, 1.6):.2f}", "three", "229.84 meters"][i % 3]
        rows.append({"id": i, "question_type": task, "ground_truth": truth, "prediction": prediction})
    return rows


def _bench_reader_layouts(tmp: Path, frames_wanted: int, repeats: int) -> dict:
    """Reader frames/s: tf-only in 12 split files vs one file with a PoseStamped topic (interleaved)."""
    from spatial_mllm_ros.bag.reader import read_frames
    from spatial_mllm_ros.bag.scene import write_scene

    receive_span_s = frames_wanted / 10.0 + 0.1  # the scene's 10 fps, plus the last messages' delays
    split = write_scene(tmp / "split", seed=0, num_frames=frames_wanted, storage="mcap",
                        max_bag_duration_s=receive_span_s / 12)
    single = write_scene(tmp / "single", seed=0, num_frames=frames_wanted, storage="mcap",
                         pose_source="pose_topic", depth_encoding="16UC1")
    files = len(list(split.bag.glob("*.mcap")))
    times: dict[str, list[float]] = {"split": [], "single": []}
    counts = {}
    for _ in range(repeats):
        for name, paths in (("split", split), ("single", single)):
            started = time.perf_counter()
            frames = [f for f in read_frames(paths.bag) if f.pose is not None]
            times[name].append(time.perf_counter() - started)
            counts[name] = len(frames)
    split_fps = counts["split"] / statistics.median(times["split"])
    single_fps = counts["single"] / statistics.median(times["single"])
    return {
        "reader_tf_split_files": files,
        "reader_tf_split_frames_per_s": round(split_fps, 1),
        "reader_pose_topic_single_file_frames_per_s": round(single_fps, 1),
        "reader_tf_split_vs_pose_topic_single_ratio": round(split_fps / single_fps, 3),
        "reader_frames_with_pose_both_layouts": int(counts["split"] == counts["single"] == frames_wanted),
    }


def _bench_scoring(tmp: Path, count: int, repeats: int) -> dict:
    """Official scoring of ``count`` predictions: in memory, and the ``score`` command end to end."""
    import contextlib
    import io
    import json

    from spatial_mllm_ros.bag.score import main, score_predictions

    rows = _predictions(count)
    path = tmp / "predictions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    score_times, command_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        result = score_predictions(rows)
        score_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            main([str(path), "--out", str(tmp / "scores.json")])
        command_times.append(time.perf_counter() - started)
    return {
        "score_predictions": count,
        "score_10k_official_s": round(statistics.median(score_times), 4),
        "score_10k_command_with_files_s": round(statistics.median(command_times), 4),
        "score_overall_percent_synthetic": round(result["overall"], 3),
    }


def run(args) -> dict:
    import json

    import torch

    from spatial_mllm_ros.bag.evaluate import evaluate_bag, read_bag_frames
    from spatial_mllm_ros.bag.reader import read_frames
    from spatial_mllm_ros.bag.scene import write_scene
    from spatial_mllm_ros.engine import SpatialQA
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    torch.set_num_threads(1)
    frames_wanted = getattr(args, "frames", 300)
    max_frames = getattr(args, "max_frames", 16)
    limit = getattr(args, "questions", 0) or (8 if args.quick else 0)
    batch_size = getattr(args, "batch_size", 8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        scene = write_scene(tmp / "scene", seed=0, num_frames=frames_wanted)
        write_scene_s = time.perf_counter() - started
        checkpoint = make_tiny_checkpoint(tmp / "tiny", preset="tiny")

        reader_times, buffer_times = [], []
        for _ in range(1 if args.quick else 3):
            started = time.perf_counter()
            decoded = sum(1 for _ in read_frames(scene.bag))
            reader_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            frames, _, _ = read_bag_frames(scene.bag, buffer_max_frames=frames_wanted)
            buffer_times.append(time.perf_counter() - started)
        reader_s, read_s = statistics.median(reader_times), statistics.median(buffer_times)

        questions_path = scene.questions
        if limit:
            rows = json.loads(Path(scene.questions).read_text())[:limit]
            questions_path = tmp / "questions_subset.json"
            questions_path.write_text(json.dumps(rows))

        qa = SpatialQA(checkpoint, max_frames=max_frames)
        try:
            qa.warmup()
            started = time.perf_counter()
            result = evaluate_bag(scene.bag, questions_path, qa, tmp / "out", max_frames=max_frames,
                                  progress=False)
            total_s = time.perf_counter() - started
            qa.cache.clear()  # the batched run pays for its own selection and encoding too
            batched = evaluate_bag(scene.bag, questions_path, qa, tmp / "out_batched", max_frames=max_frames,
                                   progress=False, report=False, batch_size=batch_size)
        finally:
            qa.close()
    questions = len(result.rows)
    with tempfile.TemporaryDirectory() as tmp:
        layouts = _bench_reader_layouts(Path(tmp), frames_wanted, 1 if args.quick else 3)
        scoring = _bench_scoring(Path(tmp), 10_000, 1 if args.quick else 5)
    return {
        "scene_frames": len(frames),
        "eval_candidate_frames": result.frames_read,
        "questions": questions,
        "max_frames": max_frames,
        "write_scene_s": round(write_scene_s, 3),
        "reader_frames_per_s": round(decoded / reader_s, 1),
        "read_into_buffer_frames_per_s": round(len(frames) / read_s, 1),
        "answer_s": round(result.answer_s, 3),
        "eval_total_s": round(total_s, 3),
        "questions_per_min": round(60.0 * questions / result.answer_s, 2),
        "questions_per_min_end_to_end": round(60.0 * questions / total_s, 2),
        "batch_size": batch_size,
        "questions_per_min_batched": round(60.0 * questions / batched.answer_s, 2),
        "batched_speedup_ratio": round(result.answer_s / batched.answer_s, 3),
        "batched_texts_equal_one_by_one": all(
            a["raw_text"] == b["raw_text"] for a, b in zip(result.rows, batched.rows, strict=True)),
        "ms_per_question_median": round(statistics.median(
            r["selection_ms"] + r["encode_ms"] + r["generate_ms"] for r in result.rows if r["selection_ms"]
        ), 2),
        "overall_score_random_weights": round(result.overall, 4),
        **layouts,
        **scoring,
    }
