# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VGGT spatial encoder (aggregator, camera/depth/point heads), faithful to the published code."""

from .aggregator import VGGTAggregator
from .config import (
    CameraHeadConfig,
    DinoV2Config,
    DPTHeadConfig,
    VGGTAggregatorConfig,
    VGGTConfig,
    vggt_config_from_spatial_config,
)

__all__ = [
    "CameraHeadConfig",
    "DPTHeadConfig",
    "DinoV2Config",
    "VGGTAggregator",
    "VGGTAggregatorConfig",
    "VGGTConfig",
    "vggt_config_from_spatial_config",
]
