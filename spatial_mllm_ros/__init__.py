# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Spatial-MLLM for ROS 2: visual-spatial answers and trajectory rewards from camera streams.

Sub-packages import in one direction only: ros -> engine/reward/bag -> model -> core.
Only ``ros`` imports rclpy.
"""

import pkgutil

# The ROS build installs the generated interfaces (msg/, srv/, action/) in a directory of the same
# name elsewhere on sys.path; extending __path__ lets a source checkout import them too.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
