# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Rosbag2 reading and writing with ``rosbags``, the synthetic scene maker, and offline evaluation."""
