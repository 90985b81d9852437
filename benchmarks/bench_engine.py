# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Engine benchmark: per-stage latency, ONNX Runtime vs torch visual encoding, the feature cache's payoff.

For each random checkpoint preset (tiny, mid) and each device (CPU; CUDA when torch sees a GPU):
- per-stage latency of ``SpatialQA.ask`` on a 16-frame selection of a synthetic RGB-D scan with the
  feature cache off (selection, preparation, visual encoding, generation, total), medians;
- on CPU: the exported ONNX visual graph vs torch eager: max abs difference and encode time ratio;
- 8 questions on the same 16 frames with the cache vs without (one-by-one asks, side by side in
  the same run, alternating), plus the batched ``ask_many``;
- on the mid preset (CPU): the language model on torch eager vs its exported ONNX graph (fp32 and
  INT4 weight-only) on the 16-frame prompt: greedy agreement, logits error, prefill time, decode
  tokens/s (alternating rounds), graph bytes; and the graph bytes of the real 3B widths (1 and 2
  decoder layers exported in fp16, then INT8/INT4), from which the README's AGX Orin estimate is made.
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
from spatial_mllm_ros.engine.decoding import TorchLanguageModel
from spatial_mllm_ros.engine.llm_onnx import (
    LLMShape,
    OnnxLanguageModel,
    QuantOptions,
    ensure_llm_graph,
    export_llm_onnx,
    graph_bytes,
    quantize_llm_onnx,
)
from spatial_mllm_ros.engine.pipeline import Selection
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
    parser.add_argument("--llm-preset", default="mid", help="preset of the LLM torch-vs-ONNX comparison")
    parser.add_argument("--llm-steps", type=int, default=32, help="decode steps per LLM measurement")
    parser.add_argument("--llm-routes", action="store_true",
                        help="also compare LLM export routes (torch.export; onnxruntime-genai if installed)")
    parser.add_argument("--no-full-width-llm", dest="full_width_llm", action="store_false",
                        help="skip exporting the real-width LLM layers (graph bytes for the Orin estimate)")


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


def _teacher_forced(runner, decoder, embeds, positions, forced, steps):
    """Prefill, then ``steps`` one-token steps feeding ``forced`` tokens (or the runner's own argmax).

    Returns (prefill s, per-step s, tokens chosen, logits [steps+1, vocab]).
    """
    length = embeds.shape[1]
    ones = torch.ones(1, length, dtype=torch.long)
    started = time.perf_counter()
    logits, past = runner(embeds, ones, positions, None)
    prefill = time.perf_counter() - started
    after = int(positions.max()) + 1
    chosen, all_logits, step_times = [], [logits], []
    for step in range(steps):
        chosen.append(int(logits.argmax(-1)))
        token = forced[step] if forced is not None else chosen[-1]
        step_embeds = decoder.embed(torch.tensor([[token]]))
        mask = torch.ones(1, length + step + 1, dtype=torch.long)
        started = time.perf_counter()
        logits, past = runner(step_embeds, mask, torch.full((3, 1, 1), after + step), past)
        step_times.append(time.perf_counter() - started)
        all_logits.append(logits)
    return prefill, step_times, chosen, torch.cat(all_logits)


class _LastLogits:
    """A runner whose graph returns every position's logits, cut to the last (onnxruntime-genai's graph)."""

    def __init__(self, runner):
        self.runner = runner

    def __call__(self, *inputs):
        logits, present = self.runner(*inputs)
        return logits[:, -1], present


def _export_routes(qa, runners, prompt, reference_ids, reference_logits, export_dir, repeats, steps, figures):
    """The export routes side by side: TorchScript tracer (used), torch.export (dynamo), onnxruntime-genai.

    onnxruntime-genai's model builder reads a stock Qwen2.5-VL folder (``export-llm`` writes one) and is
    measured only when the package is importable (it is not a project dependency).
    """
    import importlib.util
    import subprocess
    import sys

    from torch.export import Dim

    from spatial_mllm_ros.engine.llm_onnx import (
        LLM_INPUTS,
        LanguageModelGraph,
        example_inputs,
        past_names,
        present_names,
    )
    from spatial_mllm_ros.model.export_llm import write_stock_checkpoint

    shape = LLMShape.of(qa.model)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    export_llm_onnx(qa.model, Path(export_dir) / "route_torchscript" / "llm.onnx")
    figures["llm_route_torchscript_export_s"] = round(time.perf_counter() - started, 2)
    dynamo_path = Path(export_dir) / "route_dynamo" / "llm.onnx"
    dynamo_path.parent.mkdir(parents=True, exist_ok=True)
    batch, length = Dim("batch", min=1, max=64), Dim("length", min=1, max=8192)
    past, total = Dim("past", min=0, max=8192), Dim("total", min=1, max=16384)
    dynamic = ({0: batch, 1: length}, {0: batch, 1: total}, {1: batch, 2: length},
               tuple({0: batch, 2: past} for _ in range(2 * shape.num_layers)))
    started = time.perf_counter()
    example = example_inputs(shape, torch.float32, torch.device("cpu"))
    torch.onnx.export(LanguageModelGraph(qa.model).eval(), example, str(dynamo_path), dynamo=True,
                      dynamic_shapes=dynamic, verbose=False,
                      input_names=[*LLM_INPUTS, *past_names(shape.num_layers)],
                      output_names=["logits", *present_names(shape.num_layers)])
    figures["llm_route_dynamo_export_s"] = round(time.perf_counter() - started, 2)
    candidates = {"dynamo": OnnxLanguageModel(dynamo_path, shape, intra_op_threads=threads)}
    if importlib.util.find_spec("onnxruntime_genai") is not None:
        stock = Path(export_dir) / "route_stock"
        write_stock_checkpoint(qa.model_dir, stock)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(stock), "-o",
                        str(stock / "genai"), "-p", "fp32", "-e", "cpu", "-c", str(stock / "cache"),
                        "--extra_options", "exclude_embeds=true"], check=True, capture_output=True)
        figures["llm_route_genai_export_s"] = round(time.perf_counter() - started, 2)
        candidates["genai"] = _LastLogits(OnnxLanguageModel(stock / "genai" / "model.onnx", shape,
                                                            intra_op_threads=threads))
    for name, runner in candidates.items():
        _, _, _, logits = _teacher_forced(runner, *prompt, reference_ids, steps)
        figures[f"llm_route_{name}_logits_max_abs_diff"] = float((logits - reference_logits).abs().max())
    prefill = {name: [] for name in ("torchscript", *candidates)}
    decode = {name: [] for name in prefill}
    timed = {"torchscript": runners["ort_fp32"], **candidates}
    for _ in range(repeats):
        for name, runner in timed.items():
            seconds, step_times, _, _ = _teacher_forced(runner, *prompt, reference_ids, steps)
            prefill[name].append(seconds * 1000)
            decode[name].append(statistics.median(step_times))
    for name in timed:
        figures[f"llm_route_{name}_prefill_16f_ms"] = _median_ms(prefill[name])
        figures[f"llm_route_{name}_decode_tokens_per_s"] = round(1.0 / statistics.median(decode[name]), 2)


def _llm_backends(qa, frames, export_dir, repeats, steps, figures, routes=False):
    """Torch eager vs the ONNX graph (fp32, INT4) for the language model on one 16-frame prompt."""
    chosen = [frames[i] for i in qa.selector.select(frames, qa.max_frames).indices]
    encoded = qa._prepare_and_encode(chosen, Selection(list(range(len(chosen))), "given", len(chosen)), 0.0)
    entry = encoded.entry
    ids = qa._chat_ids(QUESTIONS[0]["question"], entry.num_video_tokens)
    decoder = qa._decoder
    positions = decoder._positions(ids, entry.video_grid_thw, entry.second_per_grid_ts)[:, None]
    embeds = decoder.embed(torch.tensor([ids]), entry.fused)
    threads = torch.get_num_threads()
    shape = LLMShape.of(qa.model)
    plain = ensure_llm_graph(qa.model, export_dir, qa.model_id, QuantOptions())
    int4 = ensure_llm_graph(qa.model, export_dir, qa.model_id, QuantOptions(bits=4, block_size=32))
    runners = {
        "torch": TorchLanguageModel(qa.model),
        "ort_fp32": OnnxLanguageModel(plain, shape, intra_op_threads=threads),
        "ort_int4": OnnxLanguageModel(int4, shape, intra_op_threads=threads),
    }
    prompt = (decoder, embeds, positions)
    _, _, reference_ids, reference_logits = _teacher_forced(runners["torch"], *prompt, None, steps)
    _, _, onnx_ids, onnx_logits = _teacher_forced(runners["ort_fp32"], *prompt, None, steps)
    _, _, int4_ids, int4_logits = _teacher_forced(runners["ort_int4"], *prompt, reference_ids, steps)
    figures["llm_prompt_tokens_16f"] = len(ids)
    figures["llm_onnx_greedy_same_as_torch"] = int(onnx_ids == reference_ids)
    figures["llm_onnx_logits_max_abs_diff"] = float((onnx_logits - reference_logits).abs().max())
    figures["llm_logits_max_abs_torch"] = float(reference_logits.abs().max())
    figures["llm_int4_logits_max_abs_diff"] = float((int4_logits - reference_logits).abs().max())
    figures["llm_int4_greedy_steps_same_as_torch_fraction"] = round(
        sum(a == b for a, b in zip(int4_ids, reference_ids, strict=True)) / steps, 3)
    prefill = {name: [] for name in runners}
    decode = {name: [] for name in runners}
    for _ in range(repeats):  # alternating rounds: the three backends see the same machine state
        for name, runner in runners.items():
            seconds, step_times, _, _ = _teacher_forced(runner, *prompt, reference_ids, steps)
            prefill[name].append(seconds * 1000)
            decode[name].append(statistics.median(step_times))
    for name in runners:
        figures[f"llm_prefill_16f_ms_{name}"] = _median_ms(prefill[name])
        figures[f"llm_decode_tokens_per_s_{name}"] = round(1.0 / statistics.median(decode[name]), 2)
    torch_rate = figures["llm_decode_tokens_per_s_torch"]
    for name in ("ort_fp32", "ort_int4"):
        ratio = figures[f"llm_decode_tokens_per_s_{name}"] / torch_rate
        figures[f"llm_{name}_over_torch_decode_ratio"] = round(ratio, 3)
    if routes:
        reference = (reference_ids, reference_logits)
        _export_routes(qa, runners, prompt, *reference, export_dir, repeats, steps, figures)
    figures["llm_fp32_graph_megabytes"] = round(graph_bytes(plain) / 1e6, 2)
    figures["llm_int4_graph_megabytes"] = round(graph_bytes(int4) / 1e6, 2)
    figures["llm_int4_bytes_over_fp32_ratio"] = round(graph_bytes(int4) / graph_bytes(plain), 4)


def _full_width_graph_bytes(work_dir, figures):
    """Graph bytes at the real Qwen2.5-VL-3B widths, 1 and 2 decoder layers, fp16 -> INT8 / INT4.

    Layers are identical, so bytes(36 layers) = bytes(1) + 35 * (bytes(2) - bytes(1)), exactly.
    Random weights: sizes are real, nothing else is.
    """
    import json

    from transformers import Qwen2_5_VLForConditionalGeneration

    from spatial_mllm_ros.model.loading import load_config
    from spatial_mllm_ros.model.tiny import preset_config

    sizes = {}
    for layers in (1, 2):
        config = preset_config("full")
        config["num_hidden_layers"] = layers
        config["vision_config"].update(depth=1, fullatt_block_indexes=[0])
        folder = Path(work_dir) / f"full_width_{layers}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config))
        model = Qwen2_5_VLForConditionalGeneration(load_config(folder)).to(torch.float16).eval()
        fp16 = export_llm_onnx(model, folder / "llm.onnx")
        del model
        sizes[(layers, "fp16")] = graph_bytes(fp16)
        for bits in (8, 4):
            quantized = quantize_llm_onnx(fp16, folder / f"llm-int{bits}.onnx", QuantOptions(bits=bits))
            sizes[(layers, f"int{bits}")] = graph_bytes(quantized)
    for kind in ("fp16", "int8", "int4"):
        per_layer = sizes[(2, kind)] - sizes[(1, kind)]
        full = sizes[(1, kind)] + 35 * per_layer
        figures[f"llm_3b_{kind}_graph_gigabytes_36_layers"] = round(full / 1e9, 3)
        figures[f"llm_3b_{kind}_graph_megabytes_per_layer"] = round(per_layer / 1e6, 2)
        # a decode step reads every weight once: the Orin's 204.8 GB/s bounds the rate from above
        figures[f"llm_3b_{kind}_orin_decode_tokens_per_s_bound"] = round(204.8e9 / full, 1)
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
        if args.full_width_llm:
            _full_width_graph_bytes(Path(tmp) / "full_width", figures)
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
                if device == "cpu" and preset == args.llm_preset:
                    _llm_backends(qa, frames, Path(tmp) / "export", max(3, repeats), args.llm_steps, figures,
                                  args.llm_routes)
                qa.close()
    return figures
