# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Engines ready at configure: SpatialQA.prepare builds the ONNX graph once; questions never export again."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.engine.shapes import PreparedShape, frame_slots, spread_frames, spread_indices
from spatial_mllm_ros.model.preprocessing import prepare_video, second_per_grid_from_timestamps

SMALL_PIXELS = 28 * 28 * 4  # the synthetic 56x84 frames keep their size
QUESTION = "How many chairs are in this room?"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"), preset="tiny", seed=0)


@pytest.fixture(scope="module")
def frames():
    return make_room_scan(num_frames=12, width=84, height=56)


def _engine(tiny_dir, backend, export_dir):
    return SpatialQA(tiny_dir, backend=backend, selector="uniform", max_frames=4, max_new_tokens=4,
                     min_pixels=SMALL_PIXELS, export_dir=export_dir)


@pytest.fixture(scope="module")
def prepared(tiny_dir, tmp_path_factory):
    """An onnxruntime and a torch engine, both prepared for 4 frames of 84x56."""
    export_dir = tmp_path_factory.mktemp("exports")
    onnx_engine, torch_engine = _engine(tiny_dir, "onnxruntime", export_dir), _engine(tiny_dir, "torch", None)
    reports = onnx_engine.prepare(height=56, width=84), torch_engine.prepare(height=56, width=84)
    yield onnx_engine, torch_engine, reports, export_dir
    onnx_engine.close()
    torch_engine.close()


def test_spreading_keeps_order_each_frames_share_and_the_time_span():
    assert [frame_slots(n) for n in (1, 2, 7, 8)] == [2, 2, 8, 8]
    assert spread_indices(2, 4) == [0, 0, 1, 1]
    assert spread_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert spread_indices(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spread_indices(5, 4)
    stamps = [10.0, 10.5, 11.0]
    for slots in (6, 8, 16):
        padded = [stamps[i] for i in spread_indices(3, slots)]
        groups = slots // 2
        # Qwen's temporal positions span (groups - 1) * second_per_grid: the clip's real 1.0 s
        assert second_per_grid_from_timestamps(padded) * (groups - 1) == pytest.approx(1.0)
    # T = 2k: one frame per temporal group, at the real spacing of the frames
    assert second_per_grid_from_timestamps([stamps[i] for i in spread_indices(3, 6)]) == pytest.approx(0.5)


def test_each_padded_group_is_qwens_still_image_of_one_frame(prepared, frames):
    """With T = 2k every temporal group is one frame twice: Qwen's own still-image encoding of it."""
    model = prepared[1].model
    chosen = frames[:2]
    padded = spread_frames(chosen, 4)
    assert [f.stamp for f in padded] == [chosen[0].stamp] * 2 + [chosen[1].stamp] * 2
    video = prepare_video(np.stack([f.rgb for f in padded]), [f.stamp for f in padded],
                          min_pixels=SMALL_PIXELS)
    with torch.inference_mode():
        together = model.get_video_embeds(video.pixel_values_videos, video.video_grid_thw)
        for index, frame in enumerate(chosen):
            still = prepare_video(np.stack([frame.rgb] * 2), [frame.stamp] * 2, min_pixels=SMALL_PIXELS)
            alone = model.get_video_embeds(still.pixel_values_videos, still.video_grid_thw)
            per_group = together.shape[0] // 2
            part = together[index * per_group:(index + 1) * per_group]
            assert (part - alone).abs().max().item() <= 1e-5


def test_prepare_exports_the_graph_once_and_questions_never_export(prepared, frames, tiny_dir):
    onnx_engine, _, (report, torch_report), export_dir = prepared
    backend = onnx_engine.backend
    path = backend.onnx_path(4, 56, 84)
    assert path.is_file() and report.built == [str(path)] and report.exports == 1 == backend.exports
    assert report.shape == onnx_engine.prepared == PreparedShape(4, (56, 84), (56, 84))
    assert report.build_s > 0 and report.warmup_s > 0 and "1 exported" in report.summary()
    assert torch_report.built == [] and torch_report.exports == 0
    assert len(onnx_engine.cache) == 0  # the warm-up question left nothing behind
    big = [Frame(stamp=f.stamp, camera_id=f.camera_id,
                 rgb=np.repeat(np.repeat(f.rgb, 2, axis=0), 2, axis=1)) for f in frames[:5]]
    asked = [onnx_engine.ask(frames, QUESTION),  # 12 buffered, 4 selected
             onnx_engine.ask(frames[:3], QUESTION),  # fewer than max_frames
             onnx_engine.ask(frames[:1], QUESTION),
             onnx_engine.ask(frames, QUESTION, max_frames=2),
             onnx_engine.ask(frames, QUESTION, max_frames=16),  # more than built: 4 are selected
             onnx_engine.ask(big, QUESTION)]  # another camera resolution
    assert all(a.ok for a in asked), [a.error for a in asked]
    assert [len(a.frame_stamps) for a in asked] == [4, 3, 1, 2, 4, 4]
    assert backend.exports == 1 and list(backend._runners) == [(4, 56, 84)]
    assert sorted(p.name for p in export_dir.glob("*.onnx")) == [path.name]
    again = _engine(tiny_dir, "onnxruntime", export_dir)
    try:  # a restarted node finds the graph on disk
        assert again.prepare(height=56, width=84).exports == 0 and again.backend.exports == 0
    finally:
        again.close()


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_padded_questions_answer_like_torch_on_the_same_frames(prepared, frames, count):
    onnx_engine, torch_engine, _, _ = prepared
    chosen = frames[:: 12 // count][:count]
    onnx_answer, torch_answer = (e.ask(chosen, QUESTION) for e in (onnx_engine, torch_engine))
    assert onnx_answer.ok and torch_answer.ok
    assert onnx_answer.raw_text == torch_answer.raw_text
    assert onnx_answer.confidence == pytest.approx(torch_answer.confidence, abs=1e-3)
    assert onnx_answer.frame_stamps == torch_answer.frame_stamps == [f.stamp for f in chosen]
    fused = [e._select_and_encode(list(chosen), 4).entry.fused for e in (onnx_engine, torch_engine)]
    assert fused[0].shape == fused[1].shape == (4 // 2 * 2 * 3, fused[1].shape[1])
    assert (fused[0] - fused[1]).abs().max().item() <= 1e-4


def test_a_full_question_on_a_prepared_engine_equals_the_unprepared_one(prepared, frames, tiny_dir):
    unprepared = _engine(tiny_dir, "torch", None)
    try:
        chosen = frames[::3]
        assert len(chosen) == 4  # exactly the built shape: nothing is spread or resized
        expected = unprepared.ask(chosen, QUESTION)
        got = prepared[1].ask(chosen, QUESTION)
        assert (got.raw_text, got.frame_stamps) == (expected.raw_text, expected.frame_stamps)
        assert got.confidence == pytest.approx(expected.confidence, abs=1e-6)
    finally:
        unprepared.close()


def test_prepare_without_an_input_size_only_warms_the_language_model(tiny_dir):
    engine = _engine(tiny_dir, "torch", None)
    try:
        report = engine.prepare()
        assert report.shape is None and engine.prepared is None and "text-only" in report.summary()
    finally:
        engine.close()
    with pytest.raises(ValueError, match="no model loaded"):
        SpatialQA(None).prepare(height=56, width=84)
    engine = _engine(tiny_dir, "torch", None)
    try:
        with pytest.raises(ValueError, match="too small"):
            engine.prepare(height=1, width=1)
        assert engine.prepared is None
    finally:
        engine.close()


def test_prepare_engine_follows_the_parameter_values(tiny_dir):
    from spatial_mllm_ros.engine.parameters import build_engine, prepare_engine

    values = {"model_path": str(tiny_dir), "selector": "uniform", "max_frames": 3, "max_new_tokens": 2,
              "min_pixels": SMALL_PIXELS, "input_width": 84, "input_height": 56}
    engine = build_engine(values)
    try:
        assert prepare_engine(engine, {**values, "warmup": False}) is None and engine.prepared is None
        report = prepare_engine(engine, values)
        assert report.shape == engine.prepared == PreparedShape(4, (56, 84), (56, 84))  # 3 -> whole pairs
        other = prepare_engine(engine, values, input_hw=(112, 168))  # e.g. from the first CameraInfo
        assert other.shape.input_hw == (112, 168)
    finally:
        engine.close()
    assert prepare_engine(build_engine({}), values) is None  # no model: nothing to warm up


def test_the_queue_answers_from_a_buffer_with_the_real_engine(prepared, frames):
    from spatial_mllm_ros.core.buffer import FrameBuffer
    from spatial_mllm_ros.engine.question_queue import QuestionQueue, answer_from_buffer
    from spatial_mllm_ros.engine.requests import RequestLimits, parse_question_text

    engine = prepared[1]
    buffer = FrameBuffer()
    for frame in frames:
        buffer.add_frame(frame)
    limits = RequestLimits(max_frames=4)
    queue = QuestionQueue(lambda request: answer_from_buffer(engine, buffer, request, default_max_frames=4),
                          capacity=2)
    try:
        window = f'"window_start": {frames[2].stamp}, "window_end": {frames[4].stamp}'
        texts = ['{"question": "How many chairs are in this room?", "query_id": "q1"}',
                 '{"question": "How many chairs are in this room?", ' + window + "}",
                 '{"question": "How many chairs?", "window_start": 1000, "window_end": 1001}',
                 '{"question": "How many chairs?", "max_frames": 1e400}']
        outcomes = [queue.submit(parse_question_text(text, limits)).result(30) for text in texts]
    finally:
        queue.stop(30)
    assert [o.reason for o in outcomes] == ["answered", "answered", "no_frames", "invalid_json"]
    assert outcomes[0].answer.ok and outcomes[0].answer.query_id == "q1"
    assert len(outcomes[0].answer.frame_stamps) == 4
    assert outcomes[1].answer.frame_stamps == [f.stamp for f in frames[2:5]]
    assert "no camera frames buffered in the window 1000.0..1001.0" in outcomes[2].message
    unconfigured = QuestionQueue(lambda r: answer_from_buffer(None, None, r, default_max_frames=4),
                                 capacity=1)
    assert unconfigured.submit(parse_question_text("q", limits)).result(5).reason == "not_configured"
    unconfigured.stop(5)


def test_the_engine_applies_the_request_bounds_to_direct_callers_too(prepared, frames):
    from spatial_mllm_ros.engine.requests import MAX_OPTION_CHARS, MAX_OPTIONS

    engine = prepared[1]
    too_many = engine.ask(frames, "Which one?", [f"o{i}" for i in range(MAX_OPTIONS + 1)])
    too_long = engine.ask(frames, "Which one?", ["x" * (MAX_OPTION_CHARS + 1), "y"])
    fine = engine.ask(frames, "Which one?", ["x" * MAX_OPTION_CHARS, "y"])
    assert "at most 26 options of at most 500 characters" in too_many.error == too_long.error
    assert fine.ok


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason="needs TensorRT and a CUDA GPU (neither is here)")
def test_tensorrt_engine_is_built_at_prepare_and_never_during_questions(tiny_dir, frames, tmp_path):
    engine = SpatialQA(tiny_dir, backend="tensorrt", device="cuda", dtype="float16", selector="uniform",
                       max_frames=4, max_new_tokens=4, min_pixels=SMALL_PIXELS, export_dir=tmp_path)
    try:
        report = engine.prepare(height=56, width=84)
        assert report.exports == 1 and list((tmp_path / "engines").rglob("*")), report.summary()
        answers = [engine.ask(frames[:count], QUESTION) for count in (1, 3, 4, len(frames))]
        assert all(a.ok for a in answers), [a.error for a in answers]
        assert engine.backend.exports == 1 and list(engine.backend._runners) == [(4, 56, 84)]
    finally:
        engine.close()
