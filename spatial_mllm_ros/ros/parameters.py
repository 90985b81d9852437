# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Node parameters declared from tables, with descriptors, validated the same way at start and on change.

A table is a list of :class:`Spec` rows (name, default, description, range or choices, read-only). The
rows of the engine come from the engine's own ROS-free table, the node-specific rows from each node;
:func:`declare` turns them into ``declare_parameters`` calls and one set-parameters validator.

Floating-point parameters are declared with dynamic typing and checked here instead of by rclpy:
``max_megabytes: 512`` in a YAML file (or ``-p x:=8``) is an INTEGER, which rclpy would refuse for a
DOUBLE parameter and end the process. :func:`value` returns such numbers as floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from spatial_mllm_ros.ros.runtime import parameter_descriptor

# Extra check of a value beyond its type/range/choices: returns why it is refused, or "".
Check = Callable[[Any], str]


@dataclass(frozen=True)
class Spec:
    """One parameter: ``choices`` for strings, ``value_range`` (inclusive) for numbers."""

    name: str
    default: Any
    description: str
    read_only: bool = True
    value_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None

    @property
    def is_float(self) -> bool:
        """A floating-point parameter (declared with dynamic typing, integers accepted)."""
        return isinstance(self.default, float)

    @property
    def is_float_list(self) -> bool:
        """A list of floating-point numbers (integers accepted)."""
        return isinstance(self.default, list) and bool(self.default) and isinstance(self.default[0], float)

    def descriptor(self):
        """The ROS descriptor (floating ranges are checked here, integers by rclpy as well)."""
        integer_range = None
        if (
            self.value_range is not None
            and isinstance(self.default, int)
            and not isinstance(self.default, bool)
        ):
            integer_range = (int(self.value_range[0]), int(self.value_range[1]))
        descriptor = parameter_descriptor(
            self.description, read_only=self.read_only, integer_range=integer_range, choices=self.choices
        )
        if self.value_range is not None and self.is_float:
            descriptor.description += f" Range: {self.value_range[0]:g} .. {self.value_range[1]:g}."
        descriptor.dynamic_typing = self.is_float or self.is_float_list
        return descriptor

    def problem(self, parameter: Parameter) -> str:
        """Why ``parameter`` is not an acceptable value of this spec, or ""."""
        value = parameter.value
        if self.is_float:
            if parameter.type_ not in (Parameter.Type.DOUBLE, Parameter.Type.INTEGER):
                return f"{self.name} must be a number, got {parameter.type_.name.lower()}"
            if not math.isfinite(float(value)):
                return f"{self.name} must be finite, got {value}"
        if self.is_float_list and parameter.type_ not in (Parameter.Type.DOUBLE_ARRAY,
                                                          Parameter.Type.INTEGER_ARRAY):
            return f"{self.name} must be a list of numbers, got {parameter.type_.name.lower()}"
        if self.value_range is not None and not isinstance(value, (list, tuple, str, bool)):
            low, high = self.value_range
            if not low <= value <= high:
                return f"{self.name}={value} is outside {low:g} .. {high:g}"
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        return self.check(value) if self.check is not None else ""


class ParameterTable:
    """The specs a node declared, by full name, and the validator rclpy calls for every change."""

    def __init__(self) -> None:
        self.specs: dict[str, Spec] = {}

    def declare(self, node: Node, specs: Iterable[Spec], prefix: str = "") -> None:
        """Declare ``specs`` (names prefixed with ``prefix.`` when given) on ``node``."""
        rows = []
        for spec in specs:
            full = f"{prefix}.{spec.name}" if prefix else spec.name
            self.specs[full] = spec
            rows.append((full, spec.default, spec.descriptor()))
        node.declare_parameters("", rows)

    def validate(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        """Rclpy set-parameters callback: refuse the first value that breaks its spec."""
        for parameter in parameters:
            spec = self.specs.get(parameter.name)
            problem = spec.problem(parameter) if spec is not None else ""
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)


def value(node: Node, name: str) -> Any:
    """A parameter's value; integers given for floating-point parameters come back as floats."""
    result = node.get_parameter(name).value
    default = None
    table = getattr(node, "parameter_table", None)
    if table is not None and name in table.specs:
        default = table.specs[name].default
    if isinstance(default, float) and isinstance(result, int):
        return float(result)
    if isinstance(default, list) and default and isinstance(default[0], float) and result is not None:
        return [float(v) for v in result]
    return result
