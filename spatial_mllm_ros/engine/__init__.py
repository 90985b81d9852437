# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Inference engine: the spatial question-answering pipeline, its backends and caches (ROS-free).

``SpatialQA`` is imported on first use so that ``from spatial_mllm_ros.engine import Answer`` does
not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spatial_mllm_ros.engine.answer import Answer

if TYPE_CHECKING:
    from spatial_mllm_ros.engine.pipeline import SpatialQA

__all__ = ["Answer", "SpatialQA"]


def __getattr__(name: str) -> Any:
    if name == "SpatialQA":
        from spatial_mllm_ros.engine.pipeline import SpatialQA

        return SpatialQA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
