# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The language model (Qwen2.5 decoder + tied ``lm_head``) as one ONNX graph with a KV cache.

Why one graph with past length 0..N: prefill (past 0, many tokens) and decode (past P, one token)
are the same computation with different dynamic sizes, so one file serves both and its weights
are stored once. Inputs are what the engine already computes outside the language model:

- ``inputs_embeds`` [B, L, hidden]: token embeddings with the fused visual + VGGT embeddings already
  scattered over the ``<|video_pad|>`` rows (the embedding table stays out of the graph);
- ``attention_mask`` [B, P+L] int64: 1 for real tokens, 0 for padding (past included);
- ``position_ids`` [3, B, L] int64: Spatial-MLLM's own M-RoPE positions (real frame timing);
- ``past_key_values.{i}.key`` / ``.value`` [B, kv_heads, P, head_dim] per layer.

Outputs: ``logits`` [B, vocab] of the LAST position only (a 16-frame prefill would otherwise return
L x 151936 floats) and ``present.{i}.key`` / ``.value`` [B, kv_heads, P+L, head_dim].

Export route (measured, see README "The language model outside torch"): transformers' own
``Qwen2_5_VLTextModel`` traced by the TorchScript-based ``torch.onnx.export`` (``dynamo=False``), with
the KV cache given as a ``DynamicCache`` built from the graph inputs and a causal + padding mask
built from tensor shapes (so it stays dynamic), passed the way ``generate`` passes a prepared mask.
Weight-only INT4/INT8 quantisation is ONNX Runtime's MatMulNBits quantiser on the exported file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import DynamicCache

from spatial_mllm_ros.engine.registry import LLM_BACKEND_NAMES, LLM_QUANTIZATIONS

LLM_ONNX_OPSET = 17
LLM_INPUTS = ("inputs_embeds", "attention_mask", "position_ids")
QUANTIZATIONS = LLM_QUANTIZATIONS


def past_names(num_layers: int) -> list[str]:
    """Graph input names of the past keys/values, layer by layer (key, value)."""
    return [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def present_names(num_layers: int) -> list[str]:
    """Graph output names of the present keys/values, layer by layer (key, value)."""
    return [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class LLMShape:
    """What the graph's shapes depend on, read from the model's text config."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int

    @classmethod
    def of(cls, model: nn.Module) -> LLMShape:
        """Shape of a Spatial-MLLM / Qwen2.5-VL model's language model."""
        text = model.config.text_config
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        return cls(
            int(text.num_hidden_layers),
            int(text.num_key_value_heads),
            head_dim,
            int(text.hidden_size),
            int(text.vocab_size),
        )


@dataclass(frozen=True)
class QuantOptions:
    """Weight-only quantisation of the graph's MatMul weights (ONNX Runtime's MatMulNBits).

    ``bits`` 4 or 8 (0 = none); ``block_size`` weights share one scale (a power of 2, >= 16);
    ``symmetric`` False stores a zero point per block too; ``accuracy_level`` is MatMulNBits' compute
    type for the activations (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8: fastest on CPU).
    """

    bits: int = 0
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4

    def __post_init__(self):
        if self.bits not in (0, 4, 8):
            raise ValueError(f"quantisation bits must be 0 (none), 4 or 8, got {self.bits}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of 2 >= 16, got {self.block_size}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"accuracy_level must be 0..4, got {self.accuracy_level}")

    @classmethod
    def named(
        cls, quantization: str, block_size: int = 32, symmetric: bool = True, accuracy_level: int = 4
    ) -> QuantOptions:
        """From a profile's ``llm_quantization`` name ("none", "int8", "int4")."""
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown LLM quantization {quantization!r}; choose from {QUANTIZATIONS}")
        bits = {"none": 0, "int8": 8, "int4": 4}[quantization]
        return cls(bits, int(block_size), bool(symmetric), int(accuracy_level))

    @property
    def tag(self) -> str:
        """Short file-name part ("fp", "int4-b32-sym-a4")."""
        if not self.bits:
            return "fp"
        return (
            f"int{self.bits}-b{self.block_size}-{'sym' if self.symmetric else 'asym'}-a{self.accuracy_level}"
        )


def causal_padding_mask(attention_mask: Tensor, query_length: Tensor | int, dtype: torch.dtype) -> Tensor:
    """[B, 1, L, P+L] additive mask: query i (at absolute P+i) sees key j iff j <= P+i and j is not padding.

    Built from tensor shapes only, so a traced graph keeps P and L dynamic. Blocked entries get the
    dtype's lowest finite value, not -inf, so a fully masked (padding) row stays finite.
    """
    total = attention_mask.shape[1]
    keys = torch.arange(total, device=attention_mask.device)
    queries = torch.arange(query_length, device=attention_mask.device) + (total - query_length)
    allowed = (keys[None, :] <= queries[:, None])[None, None] & attention_mask[:, None, None, :].bool()
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    lowest = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, zero, lowest)


class LanguageModelGraph(nn.Module):
    """transformers' text model + ``lm_head`` with flat KV inputs/outputs (the exported module)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_model = model.model.language_model
        self.lm_head = model.lm_head
        config = self.text_model.config
        if getattr(self.text_model, "has_sliding_layers", False):
            raise ValueError("sliding-window attention layers are not supported by the LLM graph export")
        self.layer_types = sorted(set(getattr(config, "layer_types", None) or ["full_attention"]))
        self.num_layers = int(config.num_hidden_layers)

    def forward(
        self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor, *past: Tensor
    ) -> tuple[Tensor, ...]:
        """(last-position logits, present key/value per layer) for one prefill or decode step."""
        cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2], strict=True)))
        mask = causal_padding_mask(attention_mask, inputs_embeds.shape[1], inputs_embeds.dtype)
        output = self.text_model(
            inputs_embeds=inputs_embeds,
            attention_mask={kind: mask for kind in self.layer_types},
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        logits = self.lm_head(output.last_hidden_state[:, -1])
        presents = []
        for layer in cache.layers:
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def example_inputs(
    shape: LLMShape, dtype: torch.dtype, device: torch.device, past: int = 3, length: int = 2
) -> tuple[Tensor, ...]:
    """Random graph inputs (past 3, 2 new tokens) to trace the export with; past > 0 keeps every path in."""
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, length, shape.hidden_size, generator=generator).to(device, dtype)
    mask = torch.ones(1, past + length, dtype=torch.long, device=device)
    positions = (torch.arange(length) + past).view(1, 1, -1).expand(3, 1, -1).contiguous().to(device)
    kv = [
        torch.randn(1, shape.num_kv_heads, past, shape.head_dim, generator=generator).to(device, dtype)
        for _ in range(2 * shape.num_layers)
    ]
    return (embeds, mask, positions, *kv)


def export_llm_onnx(model: nn.Module, path: str | Path) -> Path:
    """Export the language model (see the module docstring) to ``path``; returns it.

    Written into a private folder and moved into place, so no reader sees a half-written graph;
    graphs above 2 GB keep their weights in one ``<name>.data`` file beside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = LLMShape.of(model)
    parameter = next(model.model.language_model.parameters())
    graph = LanguageModelGraph(model).eval()
    example = example_inputs(shape, parameter.dtype, parameter.device)
    inputs = [*LLM_INPUTS, *past_names(shape.num_layers)]
    outputs = ["logits", *present_names(shape.num_layers)]
    dynamic_axes: dict[str, dict[int, str]] = {
        "inputs_embeds": {0: "batch", 1: "length"},
        "attention_mask": {0: "batch", 1: "total_length"},
        "position_ids": {1: "batch", 2: "length"},
        "logits": {0: "batch"},
    }
    for name in past_names(shape.num_layers):
        dynamic_axes[name] = {0: "batch", 2: "past_length"}
    for name in present_names(shape.num_layers):
        dynamic_axes[name] = {0: "batch", 2: "total_length"}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-") as scratch:
        tmp = Path(scratch) / path.name
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes read in Python are expected
            torch.onnx.export(
                graph,
                example,
                str(tmp),
                dynamo=False,
                opset_version=LLM_ONNX_OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        _gather_external_data(Path(scratch), tmp, path)
        os.replace(tmp, path)
    return path


def _gather_external_data(scratch: Path, tmp: Path, final: Path) -> None:
    """Collect weights the exporter spilled into per-tensor files into one ``<name>.data`` file."""
    if len(list(scratch.iterdir())) <= 1:
        return
    import onnx

    proto = onnx.load(str(tmp))
    data_name = final.name + ".data"
    for stale in scratch.iterdir():
        if stale != tmp:
            stale.unlink()
    onnx.save_model(
        proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name
    )
    os.replace(scratch / data_name, final.with_name(data_name))


def quantize_llm_onnx(source: str | Path, target: str | Path, options: QuantOptions) -> Path:
    """Weight-only quantisation of every MatMul with a constant weight (MatMulNBits); returns ``target``."""
    if not options.bits:
        raise ValueError("quantize_llm_onnx needs bits 4 or 8")
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    target = Path(target)
    config = DefaultWeightOnlyQuantConfig(
        block_size=options.block_size,
        is_symmetric=options.symmetric,
        accuracy_level=options.accuracy_level or None,
        bits=options.bits,
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.WARNING)  # it logs every node it looks at
    try:
        quantizer.process()
    finally:
        logger.setLevel(level)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}-") as scratch:
        tmp = Path(scratch) / target.name
        proto = quantizer.model.model
        large = proto.ByteSize() > (1 << 31) - (1 << 26)
        data_name = target.name + ".data"
        onnx.save_model(
            proto, str(tmp), save_as_external_data=large, all_tensors_to_one_file=True, location=data_name
        )
        if large:
            os.replace(Path(scratch) / data_name, target.with_name(data_name))
        os.replace(tmp, target)
    return target


def graph_bytes(path: str | Path) -> int:
    """Bytes of an ONNX graph on disk, its external weight file included."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


@dataclass(frozen=True)
class LLMGraphFiles:
    """Where the exported (and quantised) graph of one checkpoint lives, with its describing sidecar."""

    onnx: Path
    sidecar: Path


def llm_graph_files(
    export_dir: str | Path, model_id: str, dtype: torch.dtype, quant: QuantOptions
) -> LLMGraphFiles:
    """File names keyed by checkpoint id, dtype and quantisation, so no two configurations share a file."""
    tag = hashlib.sha256(model_id.encode()).hexdigest()[:12]
    stem = f"llm-{tag}-{str(dtype).removeprefix('torch.')}-{quant.tag}"
    base = Path(export_dir)
    return LLMGraphFiles(base / f"{stem}.onnx", base / f"{stem}.json")


def ensure_llm_graph(model: nn.Module, export_dir: str | Path, model_id: str, quant: QuantOptions) -> Path:
    """The graph for this checkpoint/dtype/quantisation: reused when its sidecar matches, else (re)made."""
    from spatial_mllm_ros.core.atomic import write_json_atomic
    from spatial_mllm_ros.engine.trt import onnx_sha256

    dtype = next(model.parameters()).dtype
    files = llm_graph_files(export_dir, model_id, dtype, quant)
    expected = {
        "model_id": model_id,
        "dtype": str(dtype),
        "quant": asdict(quant),
        "shape": asdict(LLMShape.of(model)),
        "opset": LLM_ONNX_OPSET,
    }
    if files.onnx.is_file() and files.sidecar.is_file():
        try:
            meta = json.loads(files.sidecar.read_text())
            if meta.get("config") == expected and meta.get("onnx_sha256") == onnx_sha256(files.onnx):
                return files.onnx
        except (OSError, ValueError):
            pass
    if quant.bits:
        plain = ensure_llm_graph(model, export_dir, model_id, QuantOptions())
        quantize_llm_onnx(plain, files.onnx, quant)
    else:
        export_llm_onnx(model, files.onnx)
    write_json_atomic(
        files.sidecar, {"config": expected, "onnx_sha256": onnx_sha256(files.onnx)}, sort_keys=True
    )
    return files.onnx


KV = tuple[tuple[Tensor, Tensor], ...]


class OnnxLanguageModel:
    """Runs the exported graph with ONNX Runtime: one call = prefill or decode step.

    Providers TensorRT > CUDA > CPU as available (only CPU when the model lives on the CPU).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        shape: LLMShape,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        device: str = "cpu",
        trt_cache_dir: str | Path | None = None,
        fp16: bool = False,
    ):
        import onnxruntime

        from spatial_mllm_ros.engine.backends import ORT_PROVIDER_PREFERENCE

        self.shape = shape
        available = onnxruntime.get_available_providers()
        wanted = list(providers) if providers is not None else list(ORT_PROVIDER_PREFERENCE)
        if device == "cpu":
            wanted = [p for p in wanted if p == "CPUExecutionProvider"]
        self.providers = [p for p in wanted if p in available]
        if not self.providers:
            raise ValueError(f"none of the ONNX Runtime providers {wanted} is available (have {available})")
        if device != "cpu" and self.providers == ["CPUExecutionProvider"]:
            raise ValueError(
                f"llm_backend onnxruntime on {device} needs a GPU build of ONNX Runtime "
                f"(CUDA/TensorRT provider; this one has {available})"
            )
        self.device = torch.device(device)
        options: list[Any] = []
        for provider in self.providers:
            if provider == "TensorrtExecutionProvider":
                options.append(
                    (
                        provider,
                        {
                            "trt_engine_cache_enable": True,
                            "trt_fp16_enable": fp16,
                            "trt_engine_cache_path": str(trt_cache_dir or Path(onnx_path).parent),
                        },
                    )
                )
            else:
                options.append(provider)
        session_options = onnxruntime.SessionOptions()
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            session_options.intra_op_num_threads = int(intra_op_threads)
        self.session = onnxruntime.InferenceSession(str(onnx_path), session_options, providers=options)
        self._past = past_names(shape.num_layers)
        self._outputs = ["logits", *present_names(shape.num_layers)]
        self.name = "onnxruntime-" + self.providers[0].removesuffix("ExecutionProvider").lower()

    @staticmethod
    def from_pairs(pairs: Sequence[tuple[Tensor, Tensor]]) -> KV:
        """Per-layer (key, value) pairs are this runner's past as they are."""
        return tuple((key, value) for key, value in pairs)

    @staticmethod
    def to_pairs(present: KV) -> KV:
        """See :meth:`from_pairs`."""
        return present

    def empty_past(self, batch: int, dtype: torch.dtype) -> KV:
        """Keys/values of length 0 (a prefill call)."""
        empty = torch.zeros(batch, self.shape.num_kv_heads, 0, self.shape.head_dim, dtype=dtype)
        return tuple((empty, empty) for _ in range(self.shape.num_layers))

    def __call__(
        self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor, past: KV | None
    ) -> tuple[Tensor, KV]:
        """(last-position logits [B, vocab], present keys/values) for one step."""
        if past is None:
            past = self.empty_past(inputs_embeds.shape[0], inputs_embeds.dtype)
        feeds = {
            "inputs_embeds": _numpy(inputs_embeds),
            "attention_mask": _numpy(attention_mask.long()),
            "position_ids": _numpy(position_ids.long()),
        }
        for name, tensor in zip(self._past, (t for pair in past for t in pair), strict=True):
            feeds[name] = _numpy(tensor)
        logits, *present = self.session.run(self._outputs, feeds)
        pairs = tuple(
            (
                torch.from_numpy(present[2 * i]).to(self.device),
                torch.from_numpy(present[2 * i + 1]).to(self.device),
            )
            for i in range(self.shape.num_layers)
        )
        return torch.from_numpy(logits).to(self.device), pairs


class TensorRTLanguageModel(OnnxLanguageModel):
    """The exported graph as a native TensorRT engine (dynamic batch / length / past), cached stale-safe.

    The engine is keyed like the visual one (GPU, compute capability, TensorRT version, ONNX hash,
    shape profile, precision; :class:`~spatial_mllm_ros.engine.trt.EngineCache`, name "llm"). A
    profile cannot hold a past of length 0, so a prefill gets one masked dummy key/value slot, dropped
    from its output.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        shape: LLMShape,
        engine_dir: str | Path,
        precision: str = "fp16",
        max_batch: int = 8,
        max_length: int = 8192,
    ):
        from spatial_mllm_ros.engine.trt import (
            EngineCache,
            TensorRTRunner,
            detect_environment,
            make_engine_key,
        )

        self.shape = shape
        self._past = past_names(shape.num_layers)
        environment = detect_environment()  # clear error without TensorRT or a GPU
        profile = llm_shape_profile(shape, max_batch, max_length)
        key = make_engine_key(onnx_path, profile, precision, environment)
        engine, _, _ = EngineCache(Path(engine_dir)).get_or_build(key, onnx_path, name="llm")
        self._runner = TensorRTRunner(engine)
        self.name = f"tensorrt-{precision}"

    def __call__(
        self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor, past: KV | None
    ) -> tuple[Tensor, KV]:
        """See :meth:`OnnxLanguageModel.__call__`."""
        dummy = past is None
        if dummy:
            batch = inputs_embeds.shape[0]
            zero = torch.zeros(
                batch,
                self.shape.num_kv_heads,
                1,
                self.shape.head_dim,
                dtype=inputs_embeds.dtype,
                device=inputs_embeds.device,
            )
            past = tuple((zero, zero) for _ in range(self.shape.num_layers))
            attention_mask = torch.cat([torch.zeros_like(attention_mask[:, :1]), attention_mask], dim=1)
        feeds = {
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask.long(),
            "position_ids": position_ids.long(),
        }
        feeds.update(zip(self._past, (t for pair in past for t in pair), strict=True))
        outputs = self._runner(feeds)
        start = 1 if dummy else 0
        pairs = tuple(
            (outputs[f"present.{i}.key"][:, :, start:], outputs[f"present.{i}.value"][:, :, start:])
            for i in range(self.shape.num_layers)
        )
        return outputs["logits"], pairs


def llm_shape_profile(shape: LLMShape, max_batch: int, max_length: int) -> Any:
    """TensorRT optimisation profile of the LLM graph: batch 1..max_batch, length and past 1..max_length."""
    from spatial_mllm_ros.engine.trt import ShapeProfile

    hidden, heads, head_dim = shape.hidden_size, shape.num_kv_heads, shape.head_dim
    ranges = {
        "inputs_embeds": ((1, 1, hidden), (1, 1, hidden), (max_batch, max_length, hidden)),
        "attention_mask": ((1, 2), (1, max_length // 2), (max_batch, 2 * max_length)),
        "position_ids": ((3, 1, 1), (3, 1, 1), (3, max_batch, max_length)),
    }
    for name in past_names(shape.num_layers):
        ranges[name] = (
            (1, heads, 1, head_dim),
            (1, heads, max_length // 2, head_dim),
            (max_batch, heads, max_length, head_dim),
        )
    return ShapeProfile.ranged(ranges)


LLM_BACKENDS = LLM_BACKEND_NAMES
LLM_BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt"}


def check_llm_backend(name: str, options: Mapping[str, Any] | None = None) -> str:
    """The canonical LLM backend name; ValueError for an unknown one or options it cannot honour."""
    key = LLM_BACKEND_ALIASES.get(name, name)
    if key not in LLM_BACKENDS:
        raise ValueError(f"unknown LLM backend {name!r}; choose from {LLM_BACKENDS}")
    quant = describe_quant(options)
    if quant.bits and key == "torch":
        raise ValueError("LLM weight quantisation needs llm_backend onnxruntime (MatMulNBits)")
    if quant.bits and key == "tensorrt":
        raise ValueError(
            "llm_backend tensorrt builds from the unquantised graph and sets its own precision; "
            "INT4 on TensorRT goes through TensorRT-LLM / Edge-LLM (see export-llm)"
        )
    return key


def make_language_model(
    name: str,
    model: nn.Module,
    export_dir: str | Path,
    model_id: str,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """The language-model runner by configuration name ("torch", "onnxruntime" / "ort", "tensorrt" / "trt").

    ``options``: ``quantization`` ("none", "int8", "int4"), ``block_size``, ``symmetric``,
    ``accuracy_level`` (ONNX Runtime only: TensorRT builds from the unquantised graph and sets its
    own precision), ``providers``, ``intra_op_threads``, ``precision`` / ``max_batch`` / ``max_length``
    (TensorRT).
    """
    from spatial_mllm_ros.engine.decoding import TorchLanguageModel

    key = check_llm_backend(name, options)
    options = dict(options or {})
    quant = describe_quant(options)
    parameter = next(model.parameters())
    if key == "torch":
        return TorchLanguageModel(model)
    if parameter.device.type == "cpu" and parameter.dtype != torch.float32:
        raise ValueError(
            f"the {key} LLM backend on CPU needs dtype float32 (ONNX Runtime's CPU kernels lack "
            f"{parameter.dtype}); use llm_backend='torch' for bf16"
        )
    shape = LLMShape.of(model)
    if key == "tensorrt":
        onnx_path = ensure_llm_graph(model, export_dir, model_id, quant)
        return TensorRTLanguageModel(
            onnx_path,
            shape,
            Path(export_dir) / "engines",
            str(options.get("precision", "fp16")),
            int(options.get("max_batch", 8)),
            int(options.get("max_length", 8192)),
        )
    onnx_path = ensure_llm_graph(model, export_dir, model_id, quant)
    threads = int(options.get("intra_op_threads", 0))
    return OnnxLanguageModel(
        onnx_path,
        shape,
        options.get("providers"),
        threads,
        parameter.device.type,
        Path(export_dir) / "ort_trt_cache",
        parameter.dtype != torch.float32,
    )


def _numpy(tensor: Tensor) -> Any:
    return tensor.detach().cpu().contiguous().numpy()


def describe_quant(options: Mapping[str, Any] | None) -> QuantOptions:
    """QuantOptions from a mapping of ``quantization``/``block_size``/``symmetric``/``accuracy_level``."""
    options = dict(options or {})
    return QuantOptions.named(
        str(options.get("quantization", "none")),
        int(options.get("block_size", 32)),
        bool(options.get("symmetric", True)),
        int(options.get("accuracy_level", 4)),
    )
