# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""One table of the engine, buffer and queue parameters, and the factories that build from it.

Every node (the QA node, the reward node, the composed process) declares these parameters from the
same :class:`ParameterSpec` entries (name, default, range or choices, read-only, description: what a
ROS ``ParameterDescriptor`` needs) and builds its engine with :func:`build_engine` from the values, so
a setting cannot be dropped on one path. The choices come from the registries that implement them
(``engine.registry``, ``core.selection.SELECTORS``): one source of truth.

Robot profiles are ``config/<name>.yaml``; :func:`profile_path` finds one (an unknown name is an
error naming the known profiles) and :func:`load_profile` reads its node parameters.

Importing this module does not import torch.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatial_mllm_ros.core.selection import SELECTORS
from spatial_mllm_ros.engine.registry import (
    BACKEND_NAMES,
    DTYPE_NAMES,
    LLM_BACKEND_NAMES,
    LLM_QUANTIZATIONS,
)

if TYPE_CHECKING:
    from spatial_mllm_ros.core.buffer import FrameBuffer
    from spatial_mllm_ros.engine.pipeline import SpatialQA
    from spatial_mllm_ros.engine.shapes import PrepareReport

SELECTOR_NAMES = tuple(SELECTORS)
MAX_FRAMES_LIMIT = 256  # upper bound of max_frames (and so of any request's max_frames)
MEGABYTE = 1024 * 1024
PACKAGE = "spatial_mllm_ros"
QA_NODE = "spatial_mllm_node"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class ParameterError(ValueError):
    """A parameter value outside its type, range or choices (the message names the parameter)."""


class EngineConfigError(ValueError):
    """The engine cannot be built from the given values (the message names the parameter and why)."""


class UnknownProfileError(ValueError):
    """A profile name that no ``config/<name>.yaml`` provides (the message lists the known ones)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter: everything a ROS ``ParameterDescriptor`` and a validator need.

    ``default`` fixes the type (bool, int, float, str or list of str). ``integer_range`` /
    ``float_range`` are inclusive bounds; ``choices`` the allowed strings.
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    integer_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        """"bool", "integer", "double", "string" or "string_array" (ROS parameter types)."""
        value = self.default
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, float):
            return "double"
        if isinstance(value, str):
            return "string"
        return "string_array"

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type (an integer for a double is converted), or ParameterError."""
        kind = self.type_name
        if kind == "double" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"bool": bool, "integer": int, "double": float, "string": str, "string_array": list}[kind]
        if kind == "string_array" and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            raise ParameterError(f"{self.name} must be of type {kind}, got {type(value).__name__} {value!r}")
        if kind == "string_array" and not all(isinstance(item, str) for item in value):
            raise ParameterError(f"{self.name} must be a list of strings, got {value!r}")
        problem = self.problem(value)
        if problem:
            raise ParameterError(problem)
        return value

    def problem(self, value: Any) -> str:
        """Why ``value`` (of the right type) is outside the range or choices, or ""."""
        bounds = self.integer_range or self.float_range
        if bounds is not None and not (bounds[0] <= value <= bounds[1]):
            return f"{self.name}={value!r} is outside {bounds[0]}..{bounds[1]}"
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        return ""


def _spec(name: str, default: Any, description: str, **options: Any) -> ParameterSpec:
    return ParameterSpec(name, default, description, **options)


ENGINE_PARAMETERS: tuple[ParameterSpec, ...] = (
    _spec("model_path", "", "Spatial-MLLM checkpoint directory; empty = no model (every question is "
          "answered with the rejection 'no model loaded')."),
    _spec("backend", "torch", "Visual encoder backend (vision tower + VGGT + connector).",
          choices=BACKEND_NAMES),
    _spec("llm_backend", "torch", "Language-model backend (onnxruntime / tensorrt: the exported graph "
          "with a KV cache).", choices=LLM_BACKEND_NAMES),
    _spec("llm_quantization", "none", "Weight-only language-model quantisation (MatMulNBits; needs "
          "llm_backend onnxruntime).", choices=LLM_QUANTIZATIONS),
    _spec("llm_quant_block_size", 32, "Weights per quantisation scale (a power of 2).",
          integer_range=(16, 256)),
    _spec("llm_quant_symmetric", True, "Symmetric quantisation (no zero points)."),
    _spec("llm_quant_accuracy_level", 4, "MatMulNBits compute type: 0 unset, 1 fp32, 2 fp16, 3 bf16, "
          "4 int8.", integer_range=(0, 4)),
    _spec("device", "cpu", "Torch device (cpu, cuda, cuda:0)."),
    _spec("dtype", "float32", "Model weights/activations dtype.", choices=DTYPE_NAMES),
    _spec("selector", "space_aware", "Frame selector (space_aware falls back to uniform without "
          "depth/pose/intrinsics).", choices=SELECTOR_NAMES),
    _spec("max_frames", 16, "Frames shown to the model per question, and the most a question may ask "
          "for; engines are built for this many frames.", read_only=True,
          integer_range=(1, MAX_FRAMES_LIMIT)),
    _spec("max_new_tokens", 16, "Longest generated answer in tokens.", integer_range=(1, 1024)),
    _spec("max_pixels", 768 * 28 * 28, "Pixel budget per frame for the model's resize (upstream "
          "768*28*28); lower is faster.", integer_range=(28 * 28, 4096 * 28 * 28)),
    _spec("min_pixels", 0, "Smallest pixel count per frame after the model's resize; 0 = the model's "
          "default (128*28*28 for video).", integer_range=(0, 4096 * 28 * 28)),
    _spec("feature_cache_megabytes", 256.0, "Bound of the visual-feature cache (repeated questions on "
          "the same frames skip encoding); 0 disables it.", float_range=(0.0, 65536.0)),
    _spec("warmup", True, "At configure, build or load the visual engines for max_frames frames at "
          "input_width x input_height and run one dummy question, so the first real one is as fast "
          "as later ones (text-only warm-up when the input size is 0)."),
    _spec("input_width", 0, "Camera image width the engines are built for (0 = unknown: take it from "
          "the first CameraInfo, or build at the first question).", integer_range=(0, 16384)),
    _spec("input_height", 0, "Camera image height the engines are built for (0 = unknown, see "
          "input_width).", integer_range=(0, 16384)),
)

BUFFER_PARAMETERS: tuple[ParameterSpec, ...] = (
    _spec("buffer.max_frames", 300, "Frames kept per camera (RGB and depth rings).",
          integer_range=(1, 100000)),
    _spec("buffer.max_megabytes", 1024.0, "Image memory bound of the buffer (all cameras).",
          float_range=(1.0, 1.0e6)),
    _spec("buffer.depth_tolerance_s", 0.02, "Largest RGB/depth stamp difference paired together.",
          float_range=(0.0, 10.0)),
    _spec("buffer.pose_tolerance_s", 0.05, "Largest distance to a pose sample used without "
          "interpolation.", float_range=(0.0, 10.0)),
    _spec("buffer.max_pose_gap_s", 0.5, "Longest pose gap interpolated across.", float_range=(0.0, 60.0)),
    _spec("buffer.reset_jump_s", 1.0, "A stream whose stamps jump this far back (bag loop, simulator "
          "reset), confirmed by buffer.reset_confirmations messages, clears the buffer; one stamp this "
          "far ahead is undone when the stream returns to its old timeline.", float_range=(0.001, 1.0e6)),
    _spec("buffer.reset_confirmations", 3, "Messages in a row on one stream that must agree on a stamp "
          "jump before it is believed (one stray stamp never clears the buffer).", integer_range=(1, 1000)),
)

QUEUE_PARAMETERS: tuple[ParameterSpec, ...] = (
    _spec("queue_size", 2, "Questions accepted and not yet answered (the running one included); more "
          "are rejected at once as busy.", integer_range=(1, 64)),
    _spec("request_timeout_s", 120.0, "How long ~/ask waits for its answer before replying with a "
          "timeout rejection (the answer still goes to ~/answer).", read_only=False,
          float_range=(0.1, 3600.0)),
)


def parameter_table(*groups: Iterable[ParameterSpec]) -> dict[str, ParameterSpec]:
    """Specs by name, from the given groups (default: engine, buffer and queue)."""
    groups = groups or (ENGINE_PARAMETERS, BUFFER_PARAMETERS, QUEUE_PARAMETERS)
    return {spec.name: spec for group in groups for spec in group}


def resolve_values(values: Mapping[str, Any], specs: Iterable[ParameterSpec] = ENGINE_PARAMETERS) -> dict:
    """The values of ``specs`` taken from ``values`` (defaults where absent), each type- and range-checked.

    Keys of ``values`` that are not in ``specs`` are ignored (a node passes all its parameters).
    Raises ParameterError naming every bad parameter.
    """
    resolved, problems = {}, []
    for spec in specs:
        try:
            resolved[spec.name] = spec.coerce(values.get(spec.name, spec.default))
        except ParameterError as error:
            problems.append(str(error))
    if problems:
        raise ParameterError("; ".join(problems))
    return resolved


def engine_kwargs(values: Mapping[str, Any]) -> dict[str, Any]:
    """``SpatialQA`` keyword arguments (model directory included as ``model_dir``) from parameter values."""
    v = resolve_values(values, ENGINE_PARAMETERS)
    return {
        "model_dir": v["model_path"] or None,
        "backend": v["backend"],
        "device": v["device"],
        "dtype": v["dtype"],
        "selector": v["selector"],
        "max_frames": v["max_frames"],
        "max_new_tokens": v["max_new_tokens"],
        "cache_bytes": int(v["feature_cache_megabytes"] * MEGABYTE),
        "max_pixels": v["max_pixels"],
        "min_pixels": v["min_pixels"] or None,
        "llm_backend": v["llm_backend"],
        "llm_options": {"quantization": v["llm_quantization"], "block_size": v["llm_quant_block_size"],
                        "symmetric": v["llm_quant_symmetric"],
                        "accuracy_level": v["llm_quant_accuracy_level"]},
    }


def build_engine(values: Mapping[str, Any], **extra: Any) -> SpatialQA:
    """The ``SpatialQA`` engine the parameter values describe (``extra``: more ``SpatialQA`` keywords).

    Raises ParameterError for a bad value and EngineConfigError (naming the parameter) when the engine
    cannot be built: missing or unreadable checkpoint, backend unavailable here, ...
    """
    from spatial_mllm_ros.engine.pipeline import SpatialQA

    kwargs = {**engine_kwargs(values), **extra}
    try:
        return SpatialQA(**kwargs)
    except FileNotFoundError as error:
        raise EngineConfigError(f"model_path={kwargs['model_dir']!r}: {error}") from error
    except (ValueError, RuntimeError, OSError, ImportError) as error:
        raise EngineConfigError(
            f"cannot build the engine (model_path={kwargs['model_dir']!r}, backend={kwargs['backend']!r}, "
            f"device={kwargs['device']!r}, dtype={kwargs['dtype']!r}): {type(error).__name__}: {error}"
        ) from error


def input_size(values: Mapping[str, Any]) -> tuple[int, int] | None:
    """The declared camera input size (height, width), or None when either is 0 (unknown)."""
    v = resolve_values(values, ENGINE_PARAMETERS)
    height, width = v["input_height"], v["input_width"]
    return (height, width) if height and width else None


def prepare_engine(engine: SpatialQA, values: Mapping[str, Any],
                   input_hw: tuple[int, int] | None = None) -> PrepareReport | None:
    """Warm ``engine`` up as the values say: at configure, before the first question.

    With ``warmup`` true and a model loaded, builds the visual engines for ``max_frames`` frames at
    ``input_hw`` (height, width; default: the declared ``input_height``/``input_width``) and runs one
    dummy question there (:meth:`SpatialQA.prepare`); with no size known, a text-only warm-up. Returns
    the report (log ``report.summary()``), or None when nothing ran.
    """
    v = resolve_values(values, ENGINE_PARAMETERS)
    if not v["warmup"] or not engine.model_loaded:
        return None
    height, width = input_hw or input_size(v) or (None, None)
    return engine.prepare(v["max_frames"], height, width)


def build_frame_buffer(values: Mapping[str, Any]) -> FrameBuffer:
    """The ``FrameBuffer`` the ``buffer.*`` parameter values describe."""
    from spatial_mllm_ros.core.buffer import FrameBuffer

    v = resolve_values(values, BUFFER_PARAMETERS)
    return FrameBuffer(
        max_frames=v["buffer.max_frames"],
        max_bytes=int(v["buffer.max_megabytes"] * MEGABYTE),
        depth_tolerance=v["buffer.depth_tolerance_s"],
        pose_tolerance=v["buffer.pose_tolerance_s"],
        max_pose_gap=v["buffer.max_pose_gap_s"],
        reset_jump=v["buffer.reset_jump_s"],
        reset_confirmations=v["buffer.reset_confirmations"],
    )


# ------------------------------------------------------------------------------ profiles
def config_dirs() -> list[Path]:
    """Where profiles are looked for: the source tree's ``config/``, then installed ``share/`` folders."""
    candidates = [Path(__file__).resolve().parents[2] / "config",
                  Path(sys.prefix) / "share" / PACKAGE / "config"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "config")
    seen, result = set(), []
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() not in seen:
            seen.add(candidate.resolve())
            result.append(candidate)
    return result


def profile_names(config_dir: str | Path | None = None) -> list[str]:
    """Names of the profiles (``<name>.yaml``) in ``config_dir``, or in every :func:`config_dirs` folder."""
    folders = [Path(config_dir)] if config_dir is not None else config_dirs()
    return sorted({path.stem for folder in folders if folder.is_dir() for path in folder.glob("*.yaml")})


def profile_path(name: str, config_dir: str | Path | None = None) -> Path:
    """The file of profile ``name``; UnknownProfileError naming the known profiles when there is none."""
    folders = [Path(config_dir)] if config_dir is not None else config_dirs()
    if isinstance(name, str) and _PROFILE_NAME.match(name):
        for folder in folders:
            path = folder / f"{name}.yaml"
            if path.is_file():
                return path
    known = profile_names(config_dir)
    raise UnknownProfileError(f"unknown profile {str(name)[:64]!r}; known profiles: "
                              f"{', '.join(known) if known else '(none found)'}")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_profile(name: str, node: str = QA_NODE, config_dir: str | Path | None = None) -> dict[str, Any]:
    """A profile's ``ros__parameters`` for ``node``, flattened to dotted names (``buffer.max_frames``)."""
    import yaml

    document = yaml.safe_load(profile_path(name, config_dir).read_text()) or {}
    for key, section in document.items():
        if str(key).rsplit("/", 1)[-1] == node and isinstance(section, Mapping):
            return _flatten(section.get("ros__parameters") or {})
    raise UnknownProfileError(f"profile {name!r} has no parameters for node {node!r}")
