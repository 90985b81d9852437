# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The engine's parameter table as node parameters, and the one place where a node builds its engine.

The QA node, the reward node and the composed process declare the same rows of
:mod:`spatial_mllm_ros.engine.parameters` and build the engine with :func:`build_engine` from their
values, so no process drops a setting (``max_pixels``, ``min_pixels``, ``feature_cache_megabytes``)
or skips the preparation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rclpy.node import Node

from spatial_mllm_ros.engine import parameters as table
from spatial_mllm_ros.ros.parameters import Spec, value


def from_table(specs: Iterable[table.ParameterSpec]) -> list[Spec]:
    """Node parameter rows of ROS-free table rows."""
    return [
        Spec(
            s.name,
            s.default,
            s.description,
            read_only=s.read_only,
            value_range=s.integer_range or s.float_range,
            choices=s.choices,
        )
        for s in specs
    ]


def engine_specs() -> list[Spec]:
    """The engine rows, plus how long configure waits for a CameraInfo to learn the input size."""
    return [
        *from_table(table.ENGINE_PARAMETERS),
        Spec(
            "camera_info_timeout_s",
            10.0,
            "How long configure waits for the first CameraInfo when input_width/input_height are 0.",
            value_range=(0.0, 600.0),
        ),
    ]


def engine_values(node: Node) -> dict[str, Any]:
    """The node's values of the engine rows."""
    return {spec.name: value(node, spec.name) for spec in table.ENGINE_PARAMETERS}


def build_engine(node: Node) -> Any:
    """A ``SpatialQA`` from the node's engine parameters (EngineConfigError naming the parameter)."""
    return table.build_engine(engine_values(node))


def prepare_engine(node: Node, engine: Any, input_hw: tuple[int, int] | None = None) -> str:
    """Prepare ``engine`` as the node's parameters say; one line saying what was built and how long.

    ``max_frames`` frames of ``input_hw`` (height, width) or of the declared input size; a text-only
    warm-up without a size.
    """
    report = table.prepare_engine(engine, engine_values(node), input_hw)
    return report.summary() if report is not None else "nothing (warmup disabled or no model)"
