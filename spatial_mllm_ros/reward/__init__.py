# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Trajectory reward annotation: per-frame progress and rewards, VOC, LeRobot v3.0 datasets in and out."""
