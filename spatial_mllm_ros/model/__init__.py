# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Torch side: Spatial-MLLM (VGGT + Qwen2.5-VL), pre-processing, tokenizer, checkpoint loading."""
