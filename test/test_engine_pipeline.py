# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""SpatialQA end to end on a tiny random checkpoint: typed answers, cache, batching, rejections."""

import importlib.util
import math

import numpy as np
import pytest
import torch

from spatial_mllm_ros.core.answers import KINDS
from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.core.selection import Selection
from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.engine import Answer, SpatialQA

SMALL_PIXELS = 28 * 28 * 4  # keeps the synthetic 56x84 frames at their size (no upscaling)
QUESTIONS = [
    {"question": "How many chairs are in this room?", "query_id": "q-count"},
    {"question": "What is the distance between the table and the door (in meters)?"},
    {"question": "Which object is closest to the sofa?", "options": ["lamp", "table", "door", "window"],
     "query_id": "q-mc"},
    {"question": "What is the size of this room (in square meters)?", "task_type": "room_size_estimation"},
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def qa(tiny_dir):
    torch.set_num_threads(1)
    engine = SpatialQA(tiny_dir, max_frames=4, max_new_tokens=4, min_pixels=SMALL_PIXELS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def frames():
    return make_room_scan(num_frames=12, width=84, height=56)


def test_ask_end_to_end_gives_a_typed_answer(qa, frames):
    answer = qa.ask(frames, "How many chairs are in this room?", query_id="q1")
    assert isinstance(answer, Answer) and answer.ok, answer.error
    assert answer.query_id == "q1" and answer.task_type == "object_counting"
    assert answer.kind in KINDS and isinstance(answer.raw_text, str)
    assert answer.kind == "none" or answer.kind == "number"  # a counting question never yields a letter
    if answer.kind == "number":
        assert answer.unit == "count" and math.isfinite(answer.value)
    else:
        assert answer.parse_reason
    assert 0.0 < answer.confidence <= 1.0
    assert isinstance(answer.selection, Selection) and answer.selection.method.startswith("space_aware")
    assert len(answer.selection.indices) == 4 == len(answer.frame_stamps)
    assert answer.frame_stamps == sorted(frames[i].stamp for i in answer.selection.indices)
    assert answer.frame_camera_ids == ["camera"] * 4
    assert answer.model_id.startswith(qa.model_id.split("@")[0]) and answer.backend == "torch-cpu"
    for stage in (answer.selection_ms, answer.prepare_ms, answer.encode_ms, answer.generate_ms):
        assert 0.0 <= stage <= answer.total_ms


def test_greedy_is_deterministic_and_the_cache_skips_encoding(qa, frames):
    qa.cache.clear()
    first = qa.ask(frames, "How far is the door from the window?")
    second = qa.ask(frames, "How far is the door from the window?")
    assert first.ok and second.ok
    assert (first.raw_text, first.confidence) == (second.raw_text, second.confidence)
    assert not first.cache_hit and second.cache_hit
    other_frames = qa.ask(frames[:6], "How far is the door from the window?")
    assert not other_frames.cache_hit and len(qa.cache) == 2
    # Another recording with the same stamps and camera name (bags replayed from t=0) is not a hit.
    repainted = [Frame(stamp=f.stamp, camera_id=f.camera_id, rgb=255 - f.rgb, depth=f.depth,
                       depth_scale=f.depth_scale, K=f.K, pose=f.pose) for f in frames]
    assert not qa.ask(repainted, "How far is the door from the window?").cache_hit


def test_batched_questions_give_the_same_text_as_one_by_one(qa, frames):
    one_by_one = [qa.ask(frames, q["question"], q.get("options"), q.get("task_type"),
                         query_id=q.get("query_id")) for q in QUESTIONS]
    batched = qa.ask_many(frames, QUESTIONS)
    assert [a.raw_text for a in batched] == [a.raw_text for a in one_by_one]
    assert [a.query_id for a in batched] == ["q-count", "", "q-mc", ""]
    assert [a.task_type for a in batched] == ["object_counting", "object_abs_distance", "object_rel_distance",
                                              "room_size_estimation"]
    np.testing.assert_allclose([a.confidence for a in batched], [a.confidence for a in one_by_one], atol=1e-4)
    choice = batched[2]
    assert choice.kind in ("choice", "none")
    if choice.kind == "choice":
        assert choice.choice_letter in "ABCD" and choice.choice_index == "ABCD".index(choice.choice_letter)
    # One selection and one encoding for the whole batch.
    assert len({tuple(a.frame_stamps) for a in batched}) == 1 and len({a.encode_ms for a in batched}) == 1


def test_bad_questions_in_a_batch_are_rejected_alone(qa, frames):
    batch = [{"question": ""}, QUESTIONS[0], {"question": "x", "colour": "red"}, "what?"]
    answers = qa.ask_many(frames, batch)
    assert [bool(a.error) for a in answers] == [True, False, True, True]
    assert "non-empty" in answers[0].error and "unknown question fields" in answers[2].error
    assert "must be a dict" in answers[3].error


def test_no_model_loaded():
    engine = SpatialQA(None)
    assert not engine.model_loaded
    answer = engine.ask(make_room_scan(num_frames=2, width=56, height=56), "How many chairs?", query_id="7")
    assert answer.error == "no model loaded" and answer.kind == "none" and answer.query_id == "7"
    assert [a.error for a in engine.ask_many([], QUESTIONS[:2])] == ["no model loaded"] * 2
    with pytest.raises(ValueError, match="no model loaded"):
        engine.generate_text([], ["hi"])
    engine.warmup()
    engine.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(frames=[]), "empty buffer"),
        (dict(frames=None), "empty buffer"),
        (dict(frames="frames"), "list of Frame"),
        (dict(frames=[np.zeros((56, 56, 3), np.uint8)]), "not a Frame"),
        (dict(question=""), "non-empty string"),
        (dict(question=None), "non-empty string"),
        (dict(question=42), "non-empty string"),
        (dict(question="x" * 5000), "too long"),
        (dict(options="A. lamp"), "list of strings"),
        (dict(options=["lamp", ""]), "non-empty string"),
        (dict(options=[str(i) for i in range(30)]), "at most 26"),
        (dict(task_type="object_weight"), "unknown task type"),
        (dict(question="Which is closer to the bed?", task_type="object_rel_distance"), "no options"),
        (dict(max_frames=0), "max_frames"),
        (dict(max_frames=2.5), "max_frames"),
    ],
)
def test_malformed_input_is_rejected_with_a_reason(qa, frames, kwargs, message):
    call = dict(frames=frames, question="How many chairs are in this room?")
    call.update(kwargs)
    answer = qa.ask(**call)
    assert isinstance(answer, Answer) and message in answer.error
    assert answer.kind == "none" and math.isnan(answer.value)


def test_frames_of_other_sizes_and_order_are_handled(qa, frames):
    mixed = list(reversed(frames[:4]))
    mixed[1] = Frame(stamp=mixed[1].stamp, camera_id="camera", rgb=np.full((40, 60, 3), 128, np.uint8))
    answer = qa.ask(mixed, "How many chairs are in this room?", max_frames=4)
    assert answer.ok, answer.error
    assert answer.frame_stamps == sorted(f.stamp for f in mixed)


def test_generate_text_uses_the_given_frames(qa, frames):
    prompts = ["Describe the room.", "How far did the camera move?"]
    texts = qa.generate_text(frames[:2], prompts, max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts == [qa.generate_text(frames[:2], [p], max_new_tokens=3)[0] for p in prompts]
    with pytest.raises(ValueError, match="prompts"):
        qa.generate_text(frames[:2], "not a list")
    with pytest.raises(ValueError, match="empty buffer"):
        qa.generate_text([], ["hi"])


def test_onnxruntime_backend_answers_like_torch(tiny_dir, qa, frames, tmp_path):
    engine = SpatialQA(tiny_dir, backend="onnxruntime", max_frames=4, max_new_tokens=4,
                       min_pixels=SMALL_PIXELS, export_dir=tmp_path)
    try:
        ort_answer = engine.ask(frames, "How many chairs are in this room?")
        torch_answer = qa.ask(frames, "How many chairs are in this room?")
        assert ort_answer.ok and ort_answer.backend == "onnxruntime-cpu"
        assert ort_answer.raw_text == torch_answer.raw_text
        assert abs(ort_answer.confidence - torch_answer.confidence) < 1e-3
    finally:
        engine.close()
    assert not engine.model_loaded
    assert engine.ask(frames, "How many chairs?").error == "no model loaded"


def test_bad_configuration_fails_fast(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SpatialQA(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        SpatialQA(None, dtype="int8")
    with pytest.raises(ValueError, match="selector"):
        SpatialQA(None, selector="random")


def test_prefix_decoding_matches_transformers_generate(qa, frames):
    """The cached-prefix batched decoder picks exactly the tokens of model.generate (one at a time)."""
    from spatial_mllm_ros.engine.decoding import PrefixDecoder, prefix_length
    from spatial_mllm_ros.model.preprocessing import prepare_video
    from spatial_mllm_ros.model.tokenizer import build_chat_input_ids

    model, tokenizer = qa.model, qa.tokenizer
    video = prepare_video(np.stack([f.rgb for f in frames[:4]]), [f.stamp for f in frames[:4]],
                          min_pixels=SMALL_PIXELS)
    fused = model.get_fused_video_embeds(video.pixel_values_videos, video.video_grid_thw, video.video_tchw)
    prompts = ["How many chairs are in this room?", "How far is the table from the door?", "Hi"]
    sequences = [build_chat_input_ids(tokenizer, p, video.num_video_tokens) for p in prompts]
    eos = [tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")]
    decoder = PrefixDecoder(model, eos, pad_id=eos[1])
    plen = prefix_length(sequences[0], tokenizer.vision_end_id)
    prefix = decoder.prefill_prefix(sequences[0][:plen], fused, video.video_grid_thw,
                                    video.second_per_grid_ts)
    assert prefix.nbytes > 0 and len(prefix.kv) == model.config.text_config.num_hidden_layers
    batched = decoder.generate(prefix, sequences, video.video_grid_thw, video.second_per_grid_ts, 6)
    with torch.inference_mode():
        for ids, (tokens, probs) in zip(sequences, batched, strict=True):
            out = model.generate(
                input_ids=torch.tensor([ids]), fused_video_embeds=fused, video_grid_thw=video.video_grid_thw,
                second_per_grid_ts=video.second_per_grid_ts, max_new_tokens=6, do_sample=False,
                pad_token_id=eos[1], eos_token_id=eos, output_logits=True, return_dict_in_generate=True,
            )
            reference = out.sequences[0, len(ids):].tolist()
            assert tokens == reference[: len(tokens)] and len(tokens) == len(reference)
            reference_probs = [float(step.float().softmax(-1)[0, t]) for step, t in zip(out.logits, reference,
                                                                                         strict=True)]
            np.testing.assert_allclose(probs, reference_probs, atol=1e-5)
    with pytest.raises(ValueError, match="cached prefix"):
        decoder.generate(prefix, [sequences[0][5:]], video.video_grid_thw, video.second_per_grid_ts, 2)


def test_cache_holds_embeddings_and_prefix_within_its_byte_bound(tiny_dir, frames):
    small = SpatialQA(tiny_dir, max_frames=4, max_new_tokens=3, min_pixels=SMALL_PIXELS)
    no_kv = SpatialQA(tiny_dir, max_frames=4, max_new_tokens=3, min_pixels=SMALL_PIXELS,
                      cache_prefix_kv=False)
    try:
        first = small.ask(frames, "How many chairs are in this room?")
        (entry,) = [small.cache.peek(key) for key in small.cache.lru_keys()]
        assert entry.prefix is not None and small.cache.bytes_used == entry.nbytes > entry.fused.numel() * 4
        plain = no_kv.ask(frames, "How many chairs are in this room?")
        (plain_entry,) = [no_kv.cache.peek(key) for key in no_kv.cache.lru_keys()]
        assert plain_entry.prefix is None and no_kv.cache.bytes_used == plain_entry.fused.numel() * 4
        assert plain.raw_text == first.raw_text
        again = no_kv.ask(frames, "How many chairs are in this room?")
        assert again.cache_hit and again.raw_text == first.raw_text
        # A bound smaller than one entry keeps nothing, and answers stay the same.
        small.cache = type(small.cache)(max_bytes=entry.nbytes - 1)
        assert small.ask(frames, "How many chairs are in this room?").raw_text == first.raw_text
        assert len(small.cache) == 0
    finally:
        small.close()
        no_kv.close()


def test_warmup_and_close_free_the_model(tiny_dir, frames):
    engine = SpatialQA(tiny_dir, max_frames=2, max_new_tokens=2, min_pixels=SMALL_PIXELS)
    engine.warmup()  # text only
    engine.warmup(frames[:2])  # a full question: the frame set is now cached
    assert len(engine.cache) == 1
    engine.close()
    assert not engine.model_loaded and engine.backend is None and len(engine.cache) == 0
    assert engine.ask(frames, "How many chairs?").error == "no model loaded"


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="TensorRT is not installed (not installable from PyPI here)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU")
def test_tensorrt_backend_answers_like_torch(tiny_dir, frames, tmp_path):
    common = dict(max_frames=4, max_new_tokens=4, min_pixels=SMALL_PIXELS, export_dir=tmp_path)
    reference = SpatialQA(tiny_dir, device="cuda", dtype="float32", **common)
    engine = SpatialQA(tiny_dir, backend="tensorrt", device="cuda", dtype="float32",
                       backend_options={"precision": "fp32"}, **common)
    try:
        expected = reference.ask(frames, "How many chairs are in this room?")
        answer = engine.ask(frames, "How many chairs are in this room?")
        assert answer.ok and answer.backend == "tensorrt-fp32", answer.error
        assert answer.raw_text == expected.raw_text
        assert engine.backend.engine_cache.stats.built == 1
    finally:
        engine.close()
        reference.close()


def test_vggt_point_selection_route(tiny_dir):
    monocular = [Frame(stamp=f.stamp, camera_id=f.camera_id, rgb=f.rgb)
                 for f in make_room_scan(num_frames=8, width=84, height=56)]
    vggt = {"target_size": 56}
    points = SpatialQA(tiny_dir, selector="space_aware_points", max_frames=2, max_new_tokens=2,
                       min_pixels=SMALL_PIXELS, vggt_options=vggt)
    fallback = SpatialQA(tiny_dir, max_frames=2, max_new_tokens=2, min_pixels=SMALL_PIXELS,
                         monocular_selector="vggt", vggt_options=vggt)
    try:
        for engine in (points, fallback):
            answer = engine.ask(monocular, "How many chairs are in this room?")
            assert answer.ok, answer.error
            assert "space_aware_points" in answer.selection.method and len(answer.frame_stamps) == 2
    finally:
        points.close()
        fallback.close()
    with pytest.raises(ValueError, match="monocular_selector"):
        SpatialQA(tiny_dir, monocular_selector="depth_anything")
