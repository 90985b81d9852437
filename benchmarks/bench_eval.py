# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Replay-evaluation throughput: frames/s read from a rosbag2 scene, questions/min answered and scored.

A 300-frame synthetic scene (bag.scene) is evaluated end to end with the tiny random checkpoint,
as ``spatial-mllm-ros eval`` would (reading, selection, asking, scoring, result files, report).
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
                                  progress=False, buffer_max_frames=frames_wanted)
            total_s = time.perf_counter() - started
            qa.cache.clear()  # the batched run pays for its own selection and encoding too
            batched = evaluate_bag(scene.bag, questions_path, qa, tmp / "out_batched", max_frames=max_frames,
                                   progress=False, report=False, buffer_max_frames=frames_wanted,
                                   batch_size=batch_size)
        finally:
            qa.close()
    questions = len(result.rows)
    return {
        "scene_frames": len(frames),
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
    }
