# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""ROS-free numpy core: frames and buffering, geometry, frame selection, prompts, answers, metrics."""
