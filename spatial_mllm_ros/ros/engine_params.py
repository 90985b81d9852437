# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The engine's parameter table as node parameters, and the one place where a node builds its engine.

The QA node, the reward node and the composed process declare the same rows of
:mod:`spatial_mllm_ros.engine.parameters` and build the engine with :func:`build_engine` from their
values, so no process drops a setting (``max_pixels``, ``min_pixels``, ``feature_cache_megabytes``)
or skips the preparation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rclpy.node import Node

from spatial_mllm_ros.engine import parameters as table
from spatial_mllm_ros.ros.parameters import Spec, value


def from_table(specs: Iterable[table.ParameterSpec]) -> list[Spec]:
    """Node parameter rows of ROS-free table rows."""
    return [Spec(s.name, s.default, s.description, read_only=s.read_only,
                 value_range=s.integer_range or s.float_range, choices=s.choices) for s in specs]


def engine_specs() -> list[Spec]:
    """The engine rows, plus how long configure waits for a CameraInfo to learn the input size."""
    return [*from_table(table.ENGINE_PARAMETERS),
            Spec("camera_info_timeout_s", 10.0, "How long configure waits for the first CameraInfo when "
                 "input_width/input_height are 0.", value_range=(0.0, 600.0))]


def engine_values(node: Node) -> dict[str, Any]:
    """The node's values of the engine rows."""
    return {spec.name: value(node, spec.name) for spec in table.ENGINE_PARAMETERS}


def build_engine(node: Node) -> Any:
    """A ``SpatialQA`` from the node's engine parameters (EngineConfigError naming the parameter)."""
    return table.build_engine(engine_values(node))


def prepare_engine(engine: Any, num_frames: int, width: int, height: int) -> tuple[str, float]:
    """Build/load what the engine needs for questions of ``num_frames`` frames of ``width``x``height``.

    Without a size only the language model is warmed up (text only). Returns (what, seconds taken).
    """
    started = time.perf_counter()
    if not getattr(engine, "model_loaded", False):
        return "nothing (no model)", 0.0
    prepare = getattr(engine, "prepare", None)
    if callable(prepare) and width > 0 and height > 0:
        built = prepare(num_frames=num_frames, width=width, height=height)
    else:
        engine.warmup()
        built = "the language model (text-only warm-up)"
    return str(built), time.perf_counter() - started
