# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VGGT spatial encoder (aggregator, camera/depth/point heads), faithful to the published code."""

from .aggregator import VGGTAggregator
from .config import (
    HEAD_NAMES,
    CameraHeadConfig,
    DinoV2Config,
    DPTHeadConfig,
    VGGTAggregatorConfig,
    VGGTConfig,
    vggt_config_from_spatial_config,
)
from .heads import CameraHead, DPTHead
from .loading import HEAD_KEY_PREFIXES, SPATIAL_MLLM_PREFIX, load_vggt, predict_world_points
from .model import VGGT
from .pose import pose_encoding_to_extri_intri, quaternion_to_matrix

__all__ = [
    "HEAD_KEY_PREFIXES",
    "HEAD_NAMES",
    "SPATIAL_MLLM_PREFIX",
    "VGGT",
    "CameraHead",
    "CameraHeadConfig",
    "DPTHead",
    "DPTHeadConfig",
    "DinoV2Config",
    "VGGTAggregator",
    "VGGTAggregatorConfig",
    "VGGTConfig",
    "load_vggt",
    "pose_encoding_to_extri_intri",
    "predict_world_points",
    "quaternion_to_matrix",
    "vggt_config_from_spatial_config",
]
