# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Shared test set-up: localhost-only DDS, logs in the build tree, the project's copy of fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOG_DIR", str(REPO_ROOT / "build" / "ros_logs"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network: Hub ids come from caches


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Reference outputs of the published code (copied from shared/fixtures into test/data)."""
    return DATA_DIR / "fixtures"
