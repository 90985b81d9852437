# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The Spatial-MLLM configuration: a Qwen2.5-VL configuration plus the spatial encoder and connector.

Published checkpoints (``Diankun/Spatial-MLLM-v1.1-Instruct-*``) store ``model_type`` "spatial-mllm" in
the flat transformers-4.51 layout (text fields at the top level, ``vision_config`` nested) with two extra
dicts: ``spatial_config`` (the VGGT spatial encoder) and ``connector_config`` (``connector_type``
"mlp_add", ``spatial_embeds_layer_idx``). transformers 5's ``Qwen2_5_VLConfig`` already reads the flat
layout into ``text_config`` / ``vision_config``; this subclass only adds the two dicts and validates them.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen2_5_VLConfig

SUPPORTED_CONNECTORS = ("mlp_add",)


@strict
class SpatialMLLMConfig(Qwen2_5_VLConfig):
    """Qwen2.5-VL config + ``spatial_config`` (VGGT) + ``connector_config`` (MLP-add)."""

    model_type = "spatial-mllm"

    spatial_config: dict | None = None
    connector_config: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.spatial_config = dict(self.spatial_config or {})
        self.connector_config = {"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1} | dict(
            self.connector_config or {}
        )
        connector_type = self.connector_config["connector_type"]
        if connector_type not in SUPPORTED_CONNECTORS:
            raise ValueError(
                f"connector_config.connector_type {connector_type!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_CONNECTORS)})"
            )
        if not isinstance(self.connector_config["spatial_embeds_layer_idx"], int):
            raise ValueError("connector_config.spatial_embeds_layer_idx must be an integer layer index")
