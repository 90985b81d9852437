# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Engine benchmark: per-stage latency, ONNX Runtime vs torch visual encoding, the feature cache's payoff.

For each random checkpoint preset (tiny, mid) and each device (CPU; CUDA when torch sees a GPU):
- per-stage latency of ``SpatialQA.ask`` on a 16-frame selection of a synthetic RGB-D scan with the
  feature cache off (selection, preparation, visual encoding, generation, total), medians;
- on CPU: the exported ONNX visual graph vs torch eager: max abs difference and encode time ratio;
- 8 questions on the same 16 frames with the cache vs without (one-by-one asks, side by side in
  the same run, alternating), plus the batched ``ask_many``;
- on CPU: engines ready at configure: ``SpatialQA.prepare`` time for the onnxruntime backend, the first
  question's latency over the median of later ones (buffers of varying frame counts, cache off),
  graphs exported during questions (0), and the first question of an unprepared engine for contrast.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.engine.backends import OnnxRuntimeBackend, TorchBackend
from spatial_mllm_ros.engine.cache import FeatureCache
from spatial_mllm_ros.model.preprocessing import prepare_video
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

QUESTIONS = [
    {"question": "How many chairs are in this room?"},
    {"question": "What is the distance between the table and the door (in meters)?"},
    {"question": "What is the size of this room (in square meters)?"},
    {"question": "What is the length of the longest dimension of the sofa (in centimeters)?"},
    {"question": "Which object is closest to the sofa?", "options": ["lamp", "table", "door", "window"]},
    {"question": "How many windows are in this room?"},
    {"question": "Which of these objects appears first in the video?", "options": ["bed", "tv", "sink"]},
    {"question": "How far is the window from the door?"},
]


def add_arguments(parser):
    parser.add_argument("--presets", default="tiny,mid", help="checkpoint presets (make_tiny_checkpoint)")
    parser.add_argument("--frames", type=int, default=16, help="frames shown to the model")
    parser.add_argument("--scan-frames", type=int, default=48, help="frames of the synthetic scan")
    parser.add_argument("--height", type=int, default=168, help="frame height (multiple of 28)")
    parser.add_argument("--width", type=int, default=224, help="frame width (multiple of 28)")
    parser.add_argument("--new-tokens", type=int, default=8, help="max new tokens per answer")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and ONNX Runtime CPU threads (0 = torch's default); 1 by default because "
                             "OpenMP spin-waiting on a shared, oversubscribed CPU inflates small ops")


def _median_ms(samples):
    return round(statistics.median(samples), 3)


def _stage_latency(qa, frames, repeats, prefix, figures):
    qa.cache = FeatureCache(0)  # measure the full path every time
    rows = []
    for i in range(repeats):
        answer = qa.ask(frames, QUESTIONS[i % len(QUESTIONS)]["question"])
        if answer.error:
            raise RuntimeError(answer.error)
        rows.append(answer)
    for stage in ("selection_ms", "prepare_ms", "encode_ms", "generate_ms", "total_ms"):
        figures[f"{prefix}_{stage}_median"] = _median_ms([getattr(a, stage) for a in rows])
    figures[f"{prefix}_frames_seen"] = len(rows[0].frame_stamps)


def _onnx_vs_torch(qa, frames, repeats, export_dir, prefix, figures):
    chosen = [frames[i] for i in qa.selector.select(frames, qa.max_frames).indices]
    import numpy as np

    video = prepare_video(np.stack([f.rgb for f in chosen]), [f.stamp for f in chosen],
                          min_pixels=qa.min_pixels, max_pixels=qa.max_pixels)
    inputs = (video.pixel_values_videos, video.video_grid_thw, video.video_tchw[0])
    eager = TorchBackend(qa.model)
    started = time.perf_counter()
    ort = OnnxRuntimeBackend(qa.model, export_dir, model_id=qa.model_id,
                             intra_op_threads=torch.get_num_threads())
    reference, onnx_out = eager.encode(*inputs), ort.encode(*inputs)  # ORT's first call exports + loads
    figures[f"{prefix}_onnx_export_and_session_s"] = round(time.perf_counter() - started, 3)
    figures[f"{prefix}_onnx_vs_torch_max_abs_diff"] = float((onnx_out - reference).abs().max())
    torch_ms, ort_ms = [], []
    for _ in range(repeats):  # alternate, side by side
        t0 = time.perf_counter()
        eager.encode(*inputs)
        torch_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        ort.encode(*inputs)
        ort_ms.append((time.perf_counter() - t0) * 1000)
    figures[f"{prefix}_encode_torch_eager_ms_median"] = _median_ms(torch_ms)
    figures[f"{prefix}_encode_onnxruntime_ms_median"] = _median_ms(ort_ms)
    ratio = _median_ms(ort_ms) / _median_ms(torch_ms)
    figures[f"{prefix}_onnxruntime_over_torch_time_ratio"] = round(ratio, 3)
    ort.close()


def _cache_payoff(qa, frames, repeats, prefix, figures, cache_bytes=1 << 30):
    cached, uncached, batched = [], [], []
    for _ in range(max(1, repeats // 2)):
        qa.cache = FeatureCache(cache_bytes)
        t0 = time.perf_counter()
        answers = [qa.ask(frames, q["question"], q.get("options")) for q in QUESTIONS]
        cached.append((time.perf_counter() - t0) * 1000)
        assert sum(a.cache_hit for a in answers) == len(QUESTIONS) - 1, [a.error for a in answers]
        qa.cache = FeatureCache(0)
        t0 = time.perf_counter()
        for q in QUESTIONS:
            qa.ask(frames, q["question"], q.get("options"))
        uncached.append((time.perf_counter() - t0) * 1000)
        qa.cache = FeatureCache(cache_bytes)
        t0 = time.perf_counter()
        qa.ask_many(frames, QUESTIONS)
        batched.append((time.perf_counter() - t0) * 1000)
    figures[f"{prefix}_8q_with_cache_ms_median"] = _median_ms(cached)
    figures[f"{prefix}_8q_without_cache_ms_median"] = _median_ms(uncached)
    figures[f"{prefix}_8q_batched_ask_many_ms_median"] = _median_ms(batched)
    figures[f"{prefix}_cache_speedup_ratio"] = round(_median_ms(uncached) / _median_ms(cached), 3)
    figures[f"{prefix}_batched_speedup_ratio"] = round(_median_ms(uncached) / _median_ms(batched), 3)


def _prepared_first_question(model_dir, frames, args, repeats, export_dir, prefix, figures):
    """Configure-time build vs building inside the first question (onnxruntime, feature cache off)."""
    def engine():
        return SpatialQA(model_dir, backend="onnxruntime", max_frames=args.frames,
                         max_new_tokens=args.new_tokens, cache_bytes=0, min_pixels=28 * 28 * 4,
                         export_dir=export_dir,
                         backend_options={"intra_op_threads": torch.get_num_threads()})

    def timed_ask(qa, shown):
        t0 = time.perf_counter()
        answer = qa.ask(shown, QUESTIONS[0]["question"])
        if answer.error:
            raise RuntimeError(answer.error)
        return (time.perf_counter() - t0) * 1000

    unprepared = engine()
    figures[f"{prefix}_unprepared_first_question_ms"] = round(timed_ask(unprepared, frames), 3)
    unprepared.close()
    for path in Path(export_dir).glob("*.onnx*"):
        path.unlink()  # the prepared engine exports again, as on a fresh robot
    qa = engine()
    report = qa.prepare(height=args.height, width=args.width)
    figures[f"{prefix}_prepare_build_s"] = round(report.build_s, 3)
    figures[f"{prefix}_prepare_warmup_question_s"] = round(report.warmup_s, 3)
    figures[f"{prefix}_prepare_graphs_exported"] = report.exports
    # buffers still filling (fewer frames than max_frames), then full: each a different frame set
    counts = [max(1, args.frames // 4), args.frames // 2, args.frames] * max(1, repeats)
    latencies = [timed_ask(qa, frames[i: i + count]) for i, count in enumerate(counts)]
    figures[f"{prefix}_prepared_first_question_ms"] = round(latencies[0], 3)
    figures[f"{prefix}_prepared_later_questions_ms_median"] = _median_ms(latencies[1:])
    figures[f"{prefix}_prepared_first_over_later_ratio"] = round(latencies[0] / _median_ms(latencies[1:]), 3)
    figures[f"{prefix}_graphs_exported_during_questions"] = qa.backend.exports - report.exports
    qa.close()


def run(args) -> dict:
    repeats = 2 if args.quick else args.repeats
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    figures: dict = {"torch_threads": torch.get_num_threads()}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    frames = make_room_scan(num_frames=args.scan_frames, width=args.width, height=args.height)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            model_dir = make_tiny_checkpoint(Path(tmp) / preset, preset=preset, seed=0)
            for device in devices:
                prefix = f"{preset}_{device}"
                qa = SpatialQA(model_dir, device=device, dtype="float32" if device == "cpu" else "bfloat16",
                               max_frames=args.frames, max_new_tokens=args.new_tokens, cache_bytes=0,
                               min_pixels=28 * 28 * 4, export_dir=Path(tmp) / "export")
                qa.warmup(frames)
                _stage_latency(qa, frames, repeats, prefix, figures)
                if device == "cpu":
                    _onnx_vs_torch(qa, frames, repeats, Path(tmp) / "export", prefix, figures)
                    _prepared_first_question(model_dir, frames, args, repeats, Path(tmp) / f"ready-{preset}",
                                             f"{prefix}_onnx", figures)
                if preset == "mid" or args.quick:
                    _cache_payoff(qa, frames, repeats, prefix, figures)
                qa.close()
    return figures
