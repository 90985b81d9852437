# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The language model as an ONNX graph with a KV cache, run by ONNX Runtime, against torch."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from spatial_mllm_ros.core.synthetic_rgbd import make_room_scan
from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.engine.decoding import PrefixDecoder, TorchLanguageModel, prefix_length
from spatial_mllm_ros.engine.llm_onnx import (
    LLMShape,
    OnnxLanguageModel,
    QuantOptions,
    ensure_llm_graph,
    export_llm_onnx,
    graph_bytes,
    llm_graph_files,
    make_language_model,
    quantize_llm_onnx,
)

SMALL_PIXELS = 28 * 28 * 4


@pytest.fixture(scope="module")
def fixture_model(fixtures_dir):
    from spatial_mllm_ros.model.modeling_spatial_mllm import SpatialMLLMForConditionalGeneration

    torch.set_num_threads(1)
    folder = fixtures_dir / "spatial_mllm_tiny"
    model = SpatialMLLMForConditionalGeneration.from_pretrained(folder).eval()
    return model, np.load(folder / "inputs.npz"), np.load(folder / "outputs.npz")


@pytest.fixture(scope="module")
def fixture_graph(fixture_model, tmp_path_factory):
    model, _, _ = fixture_model
    path = export_llm_onnx(model, tmp_path_factory.mktemp("llm") / "llm.onnx")
    return OnnxLanguageModel(path, LLMShape.of(model), intra_op_threads=1), path


def _recorded_generation(model, inputs, outputs, language_model, steps=8):
    """Greedy ids and per-step logits of ``language_model`` on the fixture's recorded prompt."""
    decoder = PrefixDecoder(model, [1002], 1000, language_model)
    ids = torch.from_numpy(inputs["input_ids"])
    embeds = decoder.embed(ids, torch.from_numpy(outputs["fused_embeds"]))
    positions = torch.from_numpy(outputs["position_ids"])
    delta = int(outputs["rope_deltas"][0, 0])
    logits, past = language_model(embeds, torch.ones_like(ids), positions, None)
    tokens, step_logits = [], [logits]
    for step in range(steps - 1):
        tokens.append(int(logits.argmax(-1)))
        total = ids.shape[1] + step + 1
        position = torch.full((3, 1, 1), ids.shape[1] + step + delta)
        logits, past = language_model(
            decoder.embed(torch.tensor([[tokens[-1]]])),
            torch.ones(1, total, dtype=torch.long),
            position,
            past,
        )
        step_logits.append(logits)
    tokens.append(int(logits.argmax(-1)))
    return tokens, torch.cat(step_logits)


def test_onnx_greedy_ids_equal_the_recorded_fixture_generation(fixture_model, fixture_graph):
    model, inputs, outputs = fixture_model
    runner, _ = fixture_graph
    recorded = outputs["generated_new_tokens"][0].tolist()
    assert recorded == [687, 556, 987, 400, 585, 524, 347, 477]
    onnx_tokens, onnx_logits = _recorded_generation(model, inputs, outputs, runner)
    torch_tokens, torch_logits = _recorded_generation(model, inputs, outputs, TorchLanguageModel(model))
    assert onnx_tokens == torch_tokens == recorded
    reference = torch.from_numpy(outputs["generate_step_logits"])
    assert (onnx_logits - reference).abs().max().item() <= 1e-3  # the fixture README's logits tolerance
    assert (onnx_logits - torch_logits).abs().max().item() <= 1e-4


def test_kv_cache_decode_equals_full_recompute(fixture_model, fixture_graph):
    """Logits after prefill + 3 one-token steps equal one pass over the whole sequence without a past."""
    model, inputs, outputs = fixture_model
    runner, _ = fixture_graph
    decoder = PrefixDecoder(model, [1002], 1000, runner)
    ids = torch.from_numpy(inputs["input_ids"])
    extra = torch.tensor([[687, 556, 987]])
    full_ids = torch.cat([ids, extra], dim=1)
    fused = torch.from_numpy(outputs["fused_embeds"])
    delta = int(outputs["rope_deltas"][0, 0])
    positions = torch.from_numpy(outputs["position_ids"])
    step_positions = (torch.arange(3) + ids.shape[1] + delta).view(1, 1, 3).expand(3, 1, 3)
    full_positions = torch.cat([positions, step_positions], dim=2)
    full_logits, full_present = runner(
        decoder.embed(full_ids, fused), torch.ones_like(full_ids), full_positions, None
    )
    logits, past = runner(decoder.embed(ids, fused), torch.ones_like(ids), positions, None)
    for step in range(3):
        total = ids.shape[1] + step + 1
        logits, past = runner(
            decoder.embed(extra[:, step : step + 1]),
            torch.ones(1, total, dtype=torch.long),
            step_positions[:, :, step : step + 1],
            past,
        )
    assert (logits - full_logits).abs().max().item() <= 1e-4
    for (key, value), (full_key, full_value) in zip(past, full_present, strict=True):
        assert key.shape == full_key.shape == (1, 2, full_ids.shape[1], 16)
        assert (key - full_key).abs().max().item() <= 1e-4 and (value - full_value).abs().max().item() <= 1e-4


def test_graph_interface(fixture_graph):
    import onnx

    runner, path = fixture_graph
    with pytest.raises(ValueError, match="GPU build of ONNX Runtime"):  # this machine's ORT is CPU-only
        OnnxLanguageModel(path, runner.shape, device="cuda")
    graph = onnx.load(str(path)).graph
    names = [i.name for i in graph.input]
    assert names[:3] == ["inputs_embeds", "attention_mask", "position_ids"]
    assert names[3:] == [f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")]
    assert [o.name for o in graph.output] == ["logits"] + [
        f"present.{i}.{k}" for i in range(2) for k in ("key", "value")
    ]
    dims = [d.dim_param or d.dim_value for d in graph.input[2].type.tensor_type.shape.dim]
    assert dims == [3, "batch", "length"]
    assert not any(node.op_type == "Gather" and "embed" in node.name for node in graph.node)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"), preset="tiny", seed=0)


def _generated_ids(qa, frames, prompts, tokens):
    """Greedy ids of the QA's decoder for ``prompts`` on ``frames`` (batched, one prefix)."""
    from spatial_mllm_ros.engine.pipeline import Selection

    encoded = qa._prepare_and_encode(
        list(frames), Selection(list(range(len(frames))), "given", len(frames)), 0.0
    )
    entry = encoded.entry
    sequences = [qa._chat_ids(p, entry.num_video_tokens) for p in prompts]
    plen = prefix_length(sequences[0], qa.tokenizer.vision_end_id)
    prefix = qa._decoder.prefill_prefix(
        sequences[0][:plen], entry.fused, entry.video_grid_thw, entry.second_per_grid_ts
    )
    results = qa._decoder.generate(prefix, sequences, entry.video_grid_thw, entry.second_per_grid_ts, tokens)
    return [ids for ids, _ in results], prefix


@pytest.mark.parametrize("preset", ["tiny", "mid"])
def test_spatialqa_onnx_llm_backend_gives_torch_ids(preset, tiny_dir, tmp_path_factory):
    """Same greedy ids on the batched, left-padded path; the mid-size config included."""
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    model_dir = (
        tiny_dir
        if preset == "tiny"
        else make_tiny_checkpoint(tmp_path_factory.mktemp("mid_model"), preset="mid", seed=0)
    )
    export = tmp_path_factory.mktemp(f"export_{preset}")
    common = dict(max_frames=4, max_new_tokens=6, min_pixels=SMALL_PIXELS, export_dir=export, cache_bytes=0)
    reference = SpatialQA(model_dir, **common)
    engine = SpatialQA(model_dir, llm_backend="onnxruntime", llm_options={"intra_op_threads": 1}, **common)
    frames = make_room_scan(num_frames=4, width=84, height=56)
    prompts = [
        "How many chairs are in this room?",
        "Which is closer, the door or the window? Answer briefly.",
    ]
    try:
        assert (
            engine.backend_name == "torch-cpu+llm-onnxruntime-cpu" and reference.backend_name == "torch-cpu"
        )
        onnx_ids, onnx_prefix = _generated_ids(engine, frames, prompts, 6)
        torch_ids, torch_prefix = _generated_ids(reference, frames, prompts, 6)
        assert onnx_ids == torch_ids and all(len(ids) >= 1 for ids in onnx_ids)
        for (key, value), (ref_key, ref_value) in zip(onnx_prefix.kv, torch_prefix.kv, strict=True):
            assert (key - ref_key).abs().max().item() <= 1e-4 and (
                value - ref_value
            ).abs().max().item() <= 1e-4
        answers = engine.ask_many(frames, [{"question": p} for p in prompts])
        expected = reference.ask_many(frames, [{"question": p} for p in prompts])
        assert [a.raw_text for a in answers] == [a.raw_text for a in expected]
        assert all(a.backend == "torch-cpu+llm-onnxruntime-cpu" for a in answers)
        engine.warmup()  # text-only warm-up through the ONNX runner
    finally:
        engine.close()
        reference.close()


def test_graph_is_reused_and_a_stale_one_is_remade(fixture_model, tmp_path):
    model, _, _ = fixture_model
    path = ensure_llm_graph(model, tmp_path, "fixture@1", QuantOptions())
    files = llm_graph_files(tmp_path, "fixture@1", torch.float32, QuantOptions())
    assert path == files.onnx and files.sidecar.is_file()
    stamp = path.stat().st_mtime_ns
    assert ensure_llm_graph(model, tmp_path, "fixture@1", QuantOptions()).stat().st_mtime_ns == stamp
    # another checkpoint fingerprint or quantisation never shares the file
    assert llm_graph_files(tmp_path, "fixture@2", torch.float32, QuantOptions()).onnx != path
    assert llm_graph_files(tmp_path, "fixture@1", torch.float32, QuantOptions(bits=4)).onnx != path
    # a graph whose bytes no longer match its sidecar (a half-copied file, an edit) is exported again
    path.write_bytes(path.read_bytes()[:-10])
    remade = ensure_llm_graph(model, tmp_path, "fixture@1", QuantOptions())
    assert remade.stat().st_mtime_ns != stamp
    meta = json.loads(files.sidecar.read_text())
    from spatial_mllm_ros.engine.trt import onnx_sha256

    assert meta["onnx_sha256"] == onnx_sha256(remade) and meta["config"]["model_id"] == "fixture@1"
    OnnxLanguageModel(remade, LLMShape.of(model))  # loads


@pytest.mark.parametrize("bits,symmetric", [(4, True), (4, False), (8, True)])
def test_weight_only_quantisation(fixture_model, fixture_graph, tmp_path, bits, symmetric):
    import onnx

    model, inputs, outputs = fixture_model
    runner, plain = fixture_graph
    options = QuantOptions(bits=bits, block_size=32, symmetric=symmetric, accuracy_level=4)
    quantized = quantize_llm_onnx(plain, tmp_path / "q.onnx", options)
    nodes = onnx.load(str(quantized)).graph.node
    matmul_nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(matmul_nbits) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer + lm_head
    for node in matmul_nbits:
        attributes = {a.name: a.i for a in node.attribute}
        assert (
            attributes["bits"] == bits
            and attributes["block_size"] == 32
            and attributes["accuracy_level"] == 4
        )
        assert (len(node.input) > 3 and node.input[3] != "") == (not symmetric)  # zero points when asymmetric
    ratio = graph_bytes(quantized) / graph_bytes(plain)
    assert ratio < (0.35 if bits == 4 else 0.5), ratio
    quant_runner = OnnxLanguageModel(quantized, LLMShape.of(model), intra_op_threads=1)
    _, logits = _recorded_generation(model, inputs, outputs, quant_runner, steps=1)
    _, reference = _recorded_generation(model, inputs, outputs, runner, steps=1)
    error = (logits - reference).abs().max().item()
    assert 0 < error < 0.25 * reference.abs().max().item()  # weights changed, logits still close


def test_quantisation_options_are_validated(fixture_model, tiny_dir, tmp_path):
    model, _, _ = fixture_model
    with pytest.raises(ValueError, match="block_size"):
        QuantOptions(bits=4, block_size=24)
    with pytest.raises(ValueError, match="bits"):
        QuantOptions(bits=3)
    with pytest.raises(ValueError, match="quantization"):
        QuantOptions.named("int2")
    with pytest.raises(ValueError, match="onnxruntime"):
        make_language_model("torch", model, tmp_path, "m", {"quantization": "int4"})
    with pytest.raises(ValueError, match="unknown LLM backend"):
        make_language_model("vllm", model, tmp_path, "m")
    with pytest.raises(ValueError, match="float32"):
        SpatialQA(tiny_dir, dtype="bfloat16", llm_backend="onnxruntime", export_dir=tmp_path)
    with pytest.raises(ValueError, match="LLM backend"):
        SpatialQA(None, llm_backend="nope")


@pytest.mark.tensorrt
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="TensorRT is not installed (not installable from PyPI here)",
)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU")
def test_tensorrt_llm_backend_gives_torch_ids(tiny_dir, tmp_path):
    common = dict(
        device="cuda",
        dtype="float32",
        max_frames=4,
        max_new_tokens=6,
        min_pixels=SMALL_PIXELS,
        export_dir=tmp_path,
        cache_bytes=0,
    )
    reference = SpatialQA(tiny_dir, **common)
    engine = SpatialQA(
        tiny_dir, llm_backend="tensorrt", llm_options={"precision": "fp32", "max_length": 2048}, **common
    )
    frames = make_room_scan(num_frames=4, width=84, height=56)
    try:
        prompts = ["How many chairs are in this room?"]
        assert (
            _generated_ids(engine, frames, prompts, 6)[0] == _generated_ids(reference, frames, prompts, 6)[0]
        )
        assert engine.backend_name.endswith("+llm-tensorrt-fp32")
        assert list((tmp_path / "engines").glob("llm-*.engine"))
    finally:
        engine.close()
        reference.close()


def test_llm_engine_cache_keys_and_stale_rebuilds(fixture_graph, tmp_path):
    """The LLM graph follows the visual graph's engine cache rules (builder injected: no TensorRT here)."""
    from spatial_mllm_ros.engine.llm_onnx import llm_shape_profile
    from spatial_mllm_ros.engine.trt import EngineCache, TrtEnvironment, make_engine_key

    _, path = fixture_graph
    shape = LLMShape(num_layers=2, num_kv_heads=2, head_dim=16, hidden_size=64, vocab_size=1024)
    calls = []

    def builder(onnx_path, profile, precision):
        calls.append((onnx_path, profile, precision))
        return f"engine for {profile.to_jsonable()} {precision}".encode()

    orin = TrtEnvironment("Orin", (8, 7), "10.3.0")
    profile = llm_shape_profile(shape, max_batch=8, max_length=2048)
    ranges = dict((name, (low, high)) for name, low, _, high in profile.inputs)
    assert ranges["inputs_embeds"] == ((1, 1, 64), (8, 2048, 64))
    assert ranges["past_key_values.1.value"] == ((1, 2, 1, 16), (8, 2, 2048, 16))
    cache = EngineCache(tmp_path / "engines", builder=builder)
    key = make_engine_key(path, profile, "fp16", orin)
    _, engine_path, built = cache.get_or_build(key, path, name="llm")
    assert built and engine_path.name.startswith("llm-")
    assert not cache.get_or_build(key, path, name="llm")[2]  # loaded, not rebuilt
    for other in (make_engine_key(path, llm_shape_profile(shape, 8, 4096), "fp16", orin),
                  make_engine_key(path, profile, "fp16", TrtEnvironment("Orin", (8, 7), "10.7.0")),
                  make_engine_key(path, profile, "fp32", orin)):
        _, other_path, rebuilt = cache.get_or_build(other, path, name="llm")
        assert rebuilt and other_path != engine_path and not engine_path.exists()  # the stale one is removed
        engine_path = other_path
    assert len(calls) == 4 and len(list((tmp_path / "engines").glob("llm-*.engine"))) == 1
