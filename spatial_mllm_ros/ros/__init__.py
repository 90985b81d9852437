# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""ROS 2 face of the package: message conversions, nodes and process entry points (the only rclpy user)."""
