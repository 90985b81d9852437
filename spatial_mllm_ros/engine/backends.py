# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Visual-encoding backends: frames -> fused video embeddings, by torch, ONNX Runtime or TensorRT.

The visual half of Spatial-MLLM (Qwen2.5-VL vision tower + VGGT aggregator + MLP-add connector)
is a fixed-shape graph once the frame count and resolution are fixed, which is the situation on a
robot (one camera resolution, ``max_frames`` frames). That half is what this module accelerates;
the language model stays on torch and receives the result through
``generate(fused_video_embeds=...)``.

- :class:`TorchBackend` runs ``model.get_fused_video_embeds`` (CPU fp32/bf16, CUDA bf16/fp16, SDPA).
- :class:`OnnxRuntimeBackend` exports the visual graph per (frames, height, width) with
  :func:`export_visual_onnx` and runs it with ONNX Runtime, providers TensorRT > CUDA > CPU as
  available.
- :class:`TensorRTBackend` builds a native TensorRT engine from the same ONNX file through the
  stale-safe :class:`~spatial_mllm_ros.engine.trt.EngineCache`.

Export uses the TorchScript-based exporter (``dynamo=False``): the Qwen vision tower splits its
attention by ``cu_seqlens.tolist()`` and builds window indices in Python loops, which
``torch.export`` refuses as data-dependent; tracing at a fixed grid bakes them in as constants.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spatial_mllm_ros.engine.registry import BACKEND_NAMES
from spatial_mllm_ros.engine.trt import (
    EngineCache,
    ShapeProfile,
    TensorRTRunner,
    detect_environment,
    make_engine_key,
)

ORT_PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ONNX_INPUT_NAMES = ("pixel_values_videos", "video_tchw")
ONNX_OUTPUT_NAME = "fused_video_embeds"
ONNX_OPSET = 17


class VisualBackend(ABC):
    """Turns one prepared video into fused video embeddings [N_video_tokens, hidden]."""

    name: str = "abstract"

    @abstractmethod
    def encode(self, pixel_values_videos: Tensor, video_grid_thw: Tensor, video_tchw: Tensor) -> Tensor:
        """Fused embeddings for one video.

        ``pixel_values_videos`` [N_patches, 3*2*14*14] (Qwen patches), ``video_grid_thw`` [1, 3],
        ``video_tchw`` [T, 3, H, W] in 0..1 (the VGGT input, same frames and resolution).
        Returns [grid_t*grid_h*grid_w/4, hidden] on the model's device in the model's dtype.
        """

    def prepare(self, num_frames: int, height: int, width: int) -> list[str]:
        """Build or load what encoding ``num_frames`` frames of ``height`` x ``width`` model pixels needs.

        Returns what was built or loaded (e.g. graph paths); eager torch needs nothing.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to free by default
        """Free what the backend holds beyond the model (sessions, engines)."""


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


class TorchBackend(VisualBackend):
    """Eager torch: the model's own ``get_fused_video_embeds``."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.device, self.dtype = _model_device_dtype(model)
        self.name = f"torch-{self.device.type}"

    @torch.inference_mode()
    def encode(self, pixel_values_videos: Tensor, video_grid_thw: Tensor, video_tchw: Tensor) -> Tensor:
        """See :meth:`VisualBackend.encode`."""
        return self.model.get_fused_video_embeds(
            pixel_values_videos.to(self.device, self.dtype),
            video_grid_thw.to(self.device),
            [video_tchw.to(self.device, self.dtype)],
        )


class _FixedGridVisualGraph(nn.Module):
    """The visual half of the model at one fixed video grid, as a two-input module for export."""

    def __init__(self, model: nn.Module, grid_thw: Sequence[int]):
        super().__init__()
        self.model = model
        self.register_buffer("grid_thw", torch.tensor([list(grid_thw)], dtype=torch.long), persistent=False)

    def forward(self, pixel_values_videos: Tensor, video_tchw: Tensor) -> Tensor:
        return self.model.get_fused_video_embeds(pixel_values_videos, self.grid_thw, [video_tchw])


@contextlib.contextmanager
def _frozen_position_embeddings(model: nn.Module, height: int, width: int) -> Iterator[None]:
    """Replace resolution-dependent position-embedding resizing by its (constant) result during export.

    The DINOv2 patch embed of VGGT resizes its position table bicubically with antialias, an op
    ONNX cannot express; at a fixed resolution the result is a constant of the weights.
    """
    patched = []
    for module in model.modules():
        method = getattr(type(module), "interpolate_pos_encoding", None)
        if method is None or not hasattr(module, "patch_size"):
            continue
        patch = int(module.patch_size)
        num_patches = (height // patch) * (width // patch)
        with torch.no_grad():
            table = method(module, num_patches, height, width).detach().clone()
        module.interpolate_pos_encoding = lambda *_args, _table=table: _table
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.interpolate_pos_encoding


def video_grid_for(num_frames: int, height: int, width: int, patch_size: int = 14,
                   temporal_patch_size: int = 2) -> tuple[int, int, int]:
    """Qwen2.5-VL video grid (t, h, w) of ``num_frames`` frames at ``height`` x ``width`` pixels."""
    if num_frames <= 0 or num_frames % temporal_patch_size:
        raise ValueError(
            f"frame count must be a positive multiple of {temporal_patch_size}, got {num_frames}"
        )
    if height % (2 * patch_size) or width % (2 * patch_size):
        raise ValueError(f"height and width must be multiples of {2 * patch_size}, got {height}x{width}")
    return num_frames // temporal_patch_size, height // patch_size, width // patch_size


def _visual_config(model: nn.Module) -> tuple[int, int, int]:
    """(patch_size, temporal_patch_size, channels) of the model's vision tower."""
    config = getattr(model, "config", None)
    vision = getattr(config, "vision_config", None)
    patch = int(getattr(vision, "patch_size", 14))
    temporal = int(getattr(vision, "temporal_patch_size", 2))
    channels = int(getattr(vision, "in_channels", getattr(vision, "in_chans", 3)))
    return patch, temporal, channels


def export_visual_onnx(model: nn.Module, num_frames: int, height: int, width: int, path: str | Path) -> Path:
    """Export vision tower + VGGT aggregator + connector for one frame count and resolution to ONNX.

    Inputs: ``pixel_values_videos`` [N_patches, C*2*p*p] and ``video_tchw`` [T, 3, H, W] (0..1),
    output ``fused_video_embeds`` [N_video_tokens, hidden], all in the model's dtype. Returns the
    path written (weights above 2 GB go to an external ``.data`` file next to it).
    """
    patch, temporal, channels = _visual_config(model)
    grid = video_grid_for(num_frames, height, width, patch, temporal)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device, dtype = _model_device_dtype(model)
    num_patches = grid[0] * grid[1] * grid[2]
    generator = torch.Generator().manual_seed(0)
    example = (
        torch.randn(num_patches, channels * temporal * patch * patch, generator=generator).to(device, dtype),
        torch.rand(num_frames, 3, height, width, generator=generator).to(device, dtype),
    )
    graph = _FixedGridVisualGraph(model, grid).eval()
    # Export into a private folder first: no reader ever sees a half-written graph, and weights the
    # exporter spills to per-tensor files (graphs above 2 GB) are gathered into one ``.data`` file.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-") as scratch:
        tmp = Path(scratch) / path.name
        with _frozen_position_embeddings(model, height, width), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about baked-in Python values are expected
            torch.onnx.export(
                graph,
                example,
                str(tmp),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=list(ONNX_INPUT_NAMES),
                output_names=[ONNX_OUTPUT_NAME],
                do_constant_folding=True,
            )
        if len(list(Path(scratch).iterdir())) > 1:
            import onnx

            proto = onnx.load(str(tmp))  # reads the spilled weights
            data_name = path.name + ".data"
            onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name)
            os.replace(Path(scratch) / data_name, path.with_name(data_name))
        os.replace(tmp, path)
    return path


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash over the model's visual parameter shapes and a few sample values.

    Used to name exported graphs when no model id is given, so that two different checkpoints
    never share a file.
    """
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(f"{name}:{tuple(parameter.shape)}:{parameter.dtype}".encode())
        flat = parameter.detach().reshape(-1)
        digest.update(flat[:: max(1, flat.numel() // 8)][:8].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class _PerShapeBackend(VisualBackend):
    """Shared part of the exported-graph backends: one ONNX file (and runner) per video shape.

    At most ``max_sessions`` runners stay loaded (least recently used dropped first): each holds its
    own copy of the weights, and a buffer with fewer frames than ``max_frames`` is another shape.
    """

    max_sessions = 2

    def __init__(self, model: nn.Module, export_dir: str | Path, model_id: str | None = None):
        self.model = model
        self.device, self.dtype = _model_device_dtype(model)
        self.export_dir = Path(export_dir)
        tag = hashlib.sha256((model_id or weights_fingerprint(model)).encode()).hexdigest()[:12]
        self._file_prefix = f"visual-{tag}-{str(self.dtype).removeprefix('torch.')}"
        # (frames, height, width) -> runner, least recently used first; each holds a copy of the weights
        self._runners: OrderedDict[tuple[int, int, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.exports = 0  # graphs exported by this backend (a rebuild after prepare() shows here)

    def onnx_path(self, num_frames: int, height: int, width: int) -> Path:
        """Where the exported graph for this shape lives."""
        return self.export_dir / f"{self._file_prefix}-T{num_frames}-H{height}-W{width}.onnx"

    def ensure_onnx(self, num_frames: int, height: int, width: int) -> Path:
        """Export the graph for this shape unless it was exported before."""
        path = self.onnx_path(num_frames, height, width)
        if not path.is_file():
            export_visual_onnx(self.model, num_frames, height, width, path)
            self.exports += 1
        return path

    def prepare(self, num_frames: int, height: int, width: int) -> list[str]:
        """Export (unless on disk) and load the graph/engine for this shape; returns the graph's path."""
        self._runner((int(num_frames), int(height), int(width)))
        return [str(self.onnx_path(num_frames, height, width))]

    def _runner(self, shape: tuple[int, int, int]) -> Any:
        with self._lock:
            if shape not in self._runners:
                while len(self._runners) >= self.max_sessions:
                    self._runners.popitem(last=False)
                self._runners[shape] = self._make_runner(self.ensure_onnx(*shape))
            self._runners.move_to_end(shape)
            return self._runners[shape]

    @abstractmethod
    def _make_runner(self, onnx_path: Path) -> Any:
        """A callable ``{name: Tensor} -> Tensor`` for one exported graph."""

    def encode(self, pixel_values_videos: Tensor, video_grid_thw: Tensor, video_tchw: Tensor) -> Tensor:
        """See :meth:`VisualBackend.encode`."""
        num_frames, _, height, width = video_tchw.shape
        runner = self._runner((int(num_frames), int(height), int(width)))
        output = runner({"pixel_values_videos": pixel_values_videos, "video_tchw": video_tchw})
        return output.to(self.device, self.dtype)

    def close(self) -> None:
        """Drop the sessions/engines."""
        with self._lock:
            self._runners.clear()


def _torch_to_numpy(tensor: Tensor) -> Any:
    return tensor.detach().cpu().numpy()


class OnnxRuntimeBackend(_PerShapeBackend):
    """The exported visual graph run by ONNX Runtime (providers TensorRT > CUDA > CPU as available)."""

    def __init__(self, model: nn.Module, export_dir: str | Path, model_id: str | None = None,
                 providers: Sequence[str] | None = None, intra_op_threads: int = 0):
        import onnxruntime

        super().__init__(model, export_dir, model_id)
        if self.dtype != torch.float32 and self.device.type == "cpu":
            raise ValueError("the onnxruntime backend on CPU needs dtype float32 (ONNX Runtime's CPU kernels "
                             f"lack {self.dtype}); use backend='torch' for bf16")
        available = onnxruntime.get_available_providers()
        wanted = list(providers) if providers is not None else list(ORT_PROVIDER_PREFERENCE)
        if self.device.type == "cpu":  # the model lives on CPU: a GPU provider would only add copies
            wanted = [p for p in wanted if p == "CPUExecutionProvider"]
        self.providers = [p for p in wanted if p in available]
        if not self.providers:
            raise ValueError(f"none of the ONNX Runtime providers {providers or wanted} is usable on "
                             f"{self.device.type} (have {available})")
        self.intra_op_threads = int(intra_op_threads)
        self.name = "onnxruntime-" + self.providers[0].removesuffix("ExecutionProvider").lower()

    def _provider_options(self) -> list[tuple[str, dict] | str]:
        options: list[tuple[str, dict] | str] = []
        for provider in self.providers:
            if provider == "TensorrtExecutionProvider":
                options.append((provider, {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.export_dir / "ort_trt_cache"),
                    "trt_fp16_enable": self.dtype != torch.float32,
                }))
            else:
                options.append(provider)
        return options

    def _make_runner(self, onnx_path: Path) -> Any:
        import onnxruntime

        session_options = onnxruntime.SessionOptions()
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.intra_op_threads:
            session_options.intra_op_num_threads = self.intra_op_threads
        session = onnxruntime.InferenceSession(
            str(onnx_path), session_options, providers=self._provider_options()
        )

        def run(inputs: dict[str, Tensor]) -> Tensor:
            feeds = {name: _torch_to_numpy(inputs[name].to(self.dtype)) for name in ONNX_INPUT_NAMES}
            (output,) = session.run([ONNX_OUTPUT_NAME], feeds)
            return torch.from_numpy(output)

        run.session = session  # type: ignore[attr-defined]
        return run


class TensorRTBackend(_PerShapeBackend):
    """Native TensorRT engine built from the exported graph, cached by :class:`EngineCache`."""

    def __init__(self, model: nn.Module, export_dir: str | Path, model_id: str | None = None,
                 precision: str = "fp16", engine_cache: EngineCache | None = None):
        super().__init__(model, export_dir, model_id)
        if self.device.type != "cuda":
            raise ValueError("the tensorrt backend needs device='cuda'")
        if self.dtype not in (torch.float32, torch.float16):
            raise ValueError("the tensorrt backend exports the graph in the model's dtype: use dtype float16 "
                             f"or float32 (got {self.dtype}; the engine precision is set by `precision`)")
        self.environment = detect_environment()  # fails early and clearly without TensorRT or a GPU
        self.precision = precision
        if engine_cache is None:
            engine_cache = EngineCache(self.export_dir / "engines")
        self.engine_cache = engine_cache
        self.name = f"tensorrt-{precision}"

    def _make_runner(self, onnx_path: Path) -> Any:
        num_frames, height, width = (int(part[1:]) for part in onnx_path.stem.split("-")[-3:])
        patch, temporal, channels = _visual_config(self.model)
        grid = video_grid_for(num_frames, height, width, patch, temporal)
        profile = ShapeProfile.fixed({
            "pixel_values_videos": (grid[0] * grid[1] * grid[2], channels * temporal * patch * patch),
            "video_tchw": (num_frames, 3, height, width),
        })
        key = make_engine_key(onnx_path, profile, self.precision, self.environment)
        engine, _, _ = self.engine_cache.get_or_build(key, onnx_path, name=onnx_path.stem.replace("-", "_"))
        runner = TensorRTRunner(engine)

        def run(inputs: dict[str, Tensor]) -> Tensor:
            return runner(inputs)[ONNX_OUTPUT_NAME]

        return run


def make_backend(name: str, model: nn.Module, export_dir: str | Path, model_id: str | None = None,
                 **options: Any) -> VisualBackend:
    """A backend by configuration name: "torch", "onnxruntime" (alias "onnx", "ort") or "tensorrt"."""
    key = {"onnx": "onnxruntime", "ort": "onnxruntime", "trt": "tensorrt"}.get(name, name)
    if key == "torch":
        return TorchBackend(model)
    if key == "onnxruntime":
        return OnnxRuntimeBackend(model, export_dir, model_id, **options)
    if key == "tensorrt":
        return TensorRTBackend(model, export_dir, model_id, **options)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKEND_NAMES}")
