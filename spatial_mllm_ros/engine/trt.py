# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Native TensorRT engines from the exported ONNX visual graph, with a cache that never loads a stale one.

A serialized TensorRT engine is only valid for the GPU model (compute capability), the TensorRT
version that built it, the exact ONNX graph and the optimisation profile it was built for. Loading
one built elsewhere either fails with an obscure deserialisation error or, worse, runs wrong
kernels; this is the most frequent TensorRT failure robot users report. So every engine is stored
next to a JSON sidecar holding the full :class:`EngineKey` and the engine's own SHA-256. An engine
is loaded only when its sidecar equals the key of the current environment and its bytes are
intact; anything else is rebuilt from the ONNX file, and older engines of the same name are
deleted.

TensorRT itself is imported lazily (it cannot be installed from PyPI on every machine; on Jetson
it comes with JetPack): without it, building or running raises :class:`TensorRTUnavailableError`
with what to do instead, while the cache logic here works and is tested with an injected builder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.core.atomic import write_bytes_atomic, write_json_atomic

Shape = tuple[int, ...]
# builder(onnx_path, profile, precision) -> serialized engine bytes
EngineBuilder = Callable[[Path, "ShapeProfile", str], bytes]

PRECISIONS = ("fp32", "fp16", "bf16")


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (or a CUDA GPU for it) is not present on this machine."""


def require_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise a clear :class:`TensorRTUnavailableError`."""
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailableError(
            "TensorRT is not installed: on Jetson it comes with JetPack (python3-libnvinfer), on a "
            "CUDA PC install NVIDIA's tensorrt wheels for your CUDA version; or choose "
            "backend='onnxruntime' (uses TensorRT/CUDA through ONNX Runtime when available) or "
            f"backend='torch' ({error})"
        ) from error
    return tensorrt


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimisation profile: (name, min, opt, max) shapes per engine input."""

    inputs: tuple[tuple[str, Shape, Shape, Shape], ...]

    def __post_init__(self):
        for name, low, opt, high in self.inputs:
            if not (len(low) == len(opt) == len(high)):
                raise ValueError(f"input {name!r}: min/opt/max shapes differ in rank")
            if any(not (a <= b <= c) for a, b, c in zip(low, opt, high, strict=True)):
                raise ValueError(f"input {name!r}: need min <= opt <= max everywhere, got {low}/{opt}/{high}")
            if any(d <= 0 for d in low):
                raise ValueError(f"input {name!r}: dimensions must be positive, got {low}")

    @classmethod
    def fixed(cls, shapes: Mapping[str, Sequence[int]]) -> ShapeProfile:
        """A profile whose min = opt = max (a graph exported for one frame count and resolution)."""
        return cls(tuple((name, tuple(map(int, s)), tuple(map(int, s)), tuple(map(int, s)))
                         for name, s in sorted(shapes.items())))

    @classmethod
    def ranged(cls, shapes: Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]) -> ShapeProfile:
        """A profile from ``{name: (min, opt, max)}``."""
        return cls(tuple((name, *(tuple(map(int, s)) for s in triple))  # type: ignore[misc]
                         for name, triple in sorted(shapes.items())))

    def to_jsonable(self) -> list:
        """Plain lists, for the sidecar."""
        return [[name, list(low), list(opt), list(high)] for name, low, opt, high in self.inputs]

    @classmethod
    def from_jsonable(cls, data: list) -> ShapeProfile:
        """Inverse of :meth:`to_jsonable`."""
        return cls(tuple((str(n), tuple(a), tuple(b), tuple(c)) for n, a, b, c in data))


@dataclass(frozen=True)
class TrtEnvironment:
    """What of the machine an engine depends on."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str


def detect_environment(device_index: int = 0) -> TrtEnvironment:
    """The current GPU and TensorRT version (:class:`TensorRTUnavailableError` if either is missing)."""
    trt = require_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("TensorRT needs a CUDA GPU and torch sees none")
    major, minor = torch.cuda.get_device_capability(device_index)
    name = torch.cuda.get_device_name(device_index)
    return TrtEnvironment(name, (int(major), int(minor)), str(trt.__version__))


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; two engines are interchangeable iff their keys are equal."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str
    onnx_sha256: str
    profile: ShapeProfile
    precision: str = "fp16"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_jsonable(self) -> dict:
        """Canonical plain-data form (sidecar content and digest input)."""
        return {
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "tensorrt_version": self.tensorrt_version,
            "onnx_sha256": self.onnx_sha256,
            "profile": self.profile.to_jsonable(),
            "precision": self.precision,
        }

    @classmethod
    def from_jsonable(cls, data: Mapping[str, Any]) -> EngineKey:
        """Inverse of :meth:`to_jsonable` (raises KeyError/TypeError/ValueError on a malformed sidecar)."""
        return cls(
            gpu_name=str(data["gpu_name"]),
            compute_capability=(int(data["compute_capability"][0]), int(data["compute_capability"][1])),
            tensorrt_version=str(data["tensorrt_version"]),
            onnx_sha256=str(data["onnx_sha256"]),
            profile=ShapeProfile.from_jsonable(data["profile"]),
            precision=str(data["precision"]),
        )

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form."""
        text = json.dumps(self.to_jsonable(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_sha256(path: str | Path) -> str:
    """SHA-256 of an ONNX graph, including its external weight file (``<name>.data``) when it has one."""
    path = Path(path)
    digest = hashlib.sha256(file_sha256(path).encode())
    for data_file in (path.with_name(path.name + ".data"), path.with_name(path.stem + ".onnx_data")):
        if data_file.is_file():
            digest.update(data_file.name.encode())
            digest.update(file_sha256(data_file).encode())
    return digest.hexdigest()


def make_engine_key(
    onnx_path: str | Path,
    profile: ShapeProfile,
    precision: str = "fp16",
    environment: TrtEnvironment | None = None,
) -> EngineKey:
    """The key of an engine for ``onnx_path`` on this machine (``environment`` detected when None)."""
    env = environment if environment is not None else detect_environment()
    return EngineKey(env.gpu_name, env.compute_capability, env.tensorrt_version,
                     onnx_sha256(onnx_path), profile, precision)


class EngineCacheStats:
    """How many engines were built, loaded and removed as stale."""

    built: int = 0
    loaded: int = 0
    stale_removed: int = 0


class EngineCache:
    """Directory of serialized engines ``<name>-<digest16>.engine`` + ``.json`` sidecars.

    ``builder`` turns an ONNX file into engine bytes; the default is :func:`build_engine_from_onnx`
    (real TensorRT). Tests inject a fake one to exercise the keying and rebuild logic.
    """

    def __init__(self, cache_dir: str | Path, builder: EngineBuilder | None = None):
        self.cache_dir = Path(cache_dir)
        self.builder: EngineBuilder = builder if builder is not None else build_engine_from_onnx
        self.stats = EngineCacheStats()

    def engine_path(self, key: EngineKey, name: str = "visual") -> Path:
        """Where the engine for ``key`` lives."""
        if not name or any(c in name for c in "/\\-") or name.startswith("."):
            raise ValueError(f"engine name must be a plain word without '/', '\\' or '-', got {name!r}")
        return self.cache_dir / f"{name}-{key.digest()[:16]}.engine"

    @staticmethod
    def sidecar_path(engine_path: Path) -> Path:
        """The JSON file describing an engine."""
        return engine_path.with_suffix(".json")

    def is_valid(self, key: EngineKey, engine_path: Path) -> bool:
        """True when ``engine_path`` exists, its sidecar holds exactly ``key`` and its bytes are intact."""
        sidecar = self.sidecar_path(engine_path)
        if not (engine_path.is_file() and sidecar.is_file()):
            return False
        try:
            meta = json.loads(sidecar.read_text())
            stored_key = EngineKey.from_jsonable(meta["key"])
            stored_hash = str(meta["engine_sha256"])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return False
        return stored_key == key and file_sha256(engine_path) == stored_hash

    def get_or_build(
        self, key: EngineKey, onnx_path: str | Path, name: str = "visual"
    ) -> tuple[bytes, Path, bool]:
        """Engine bytes for ``key``: loaded when a valid engine exists, otherwise built and stored.

        Returns (engine bytes, engine path, built?). Engines of the same ``name`` with another key
        are stale and are deleted after a successful build.
        """
        path = self.engine_path(key, name)
        if self.is_valid(key, path):
            self.stats.loaded += 1
            return path.read_bytes(), path, False
        onnx_path = Path(onnx_path)
        if onnx_sha256(onnx_path) != key.onnx_sha256:
            raise ValueError(f"{onnx_path} does not match the engine key's ONNX hash (the file changed)")
        engine = bytes(self.builder(onnx_path, key.profile, key.precision))
        if not engine:
            raise RuntimeError(f"the TensorRT builder returned an empty engine for {onnx_path}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, engine)
        meta = {"key": key.to_jsonable(), "engine_sha256": hashlib.sha256(engine).hexdigest(),
                "onnx_path": str(onnx_path)}
        write_json_atomic(self.sidecar_path(path), meta, sort_keys=True)
        self.stats.built += 1
        for other in self.cache_dir.glob(f"{name}-*.engine"):
            if other != path:
                other.unlink(missing_ok=True)
                self.sidecar_path(other).unlink(missing_ok=True)
                self.stats.stale_removed += 1
        return engine, path, True


def build_engine_from_onnx(
    onnx_path: Path, profile: ShapeProfile, precision: str = "fp16", workspace_bytes: int = 4 << 30
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file with one optimisation profile."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:  # TensorRT 8.x needs explicit batch asked for
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from a file so that external weight data resolves
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    optimisation_profile = builder.create_optimization_profile()
    for name, low, opt, high in profile.inputs:
        optimisation_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimisation_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


class TensorRTRunner:
    """Runs a deserialized engine on torch CUDA tensors (TensorRT 10 named-tensor API)."""

    def __init__(self, engine_bytes: bytes):
        trt = require_tensorrt()
        import torch

        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built by another TensorRT/GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: self._torch_dtype(trt, self._engine.get_tensor_dtype(n)) for n in names}

    def _torch_dtype(self, trt: Any, dtype: Any) -> Any:
        torch = self._torch
        table = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT8: torch.int8,
            trt.DataType.BOOL: torch.bool,
        }
        for optional, torch_dtype in (("BF16", torch.bfloat16), ("INT64", torch.int64)):
            if hasattr(trt.DataType, optional):
                table[getattr(trt.DataType, optional)] = torch_dtype
        return table[dtype]

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run once; ``inputs`` maps input names to tensors (moved to CUDA and cast as the engine needs)."""
        torch = self._torch
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing engine inputs: {sorted(missing)}")
        stream = torch.cuda.current_stream()
        keep_alive = []
        for name in self.input_names:
            tensor = inputs[name].to("cuda", self._dtypes[name]).contiguous()
            keep_alive.append(tensor)
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return outputs
