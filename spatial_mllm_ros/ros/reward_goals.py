# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``ScoreTrajectory`` goals checked before any work: bounded text, sane numbers, a readable bag.

A goal is untrusted input like any message: its strings are bounded, its numbers finite, its time
window ordered, and a ``bag_path`` must name an existing rosbag2 directory (with ``metadata.yaml``) or
``.mcap`` file, inside ``bag_root`` when that parameter is set. :func:`goal_problem` returns the reason
a goal cannot be scored ("" when it can), so that the node aborts it at once with that reason instead
of letting it wait for the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_mllm_ros.reward.annotator import MODES
from spatial_mllm_ros.reward.lerobot import is_lerobot_root
from spatial_mllm_ros.ros import conversions as conv

MAX_INSTRUCTION_CHARS = 2000
MAX_NAME_CHARS = 256
MAX_PATH_CHARS = 4096
MAX_STRIDE = 100_000
MAX_STAMP_S = float(2**31)


@dataclass(frozen=True)
class GoalWindow:
    """The goal's time window in seconds (None = unbounded)."""

    start: float | None
    end: float | None


def goal_window(goal: Any) -> GoalWindow:
    """Window of a goal: both stamps zero = everything; one zero = unbounded on that side."""
    start, end = conv.stamp_to_sec(goal.window_start), conv.stamp_to_sec(goal.window_end)
    return GoalWindow(start or None, end or None)


def _text_problem(name: str, text: str, limit: int, required: bool = False) -> str:
    if required and not text.strip():
        return f"{name} must not be empty"
    if len(text) > limit:
        return f"{name} has {len(text)} characters (at most {limit})"
    if "\x00" in text:
        return f"{name} contains a NUL character"
    return ""


def bag_problem(bag_path: str, bag_root: str) -> str:
    """Why ``bag_path`` is not a readable recording (rosbag2) or LeRobot v3 dataset here, or ""."""
    path = Path(bag_path).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return f"bag not found: {bag_path} (no such file or directory)"
    if bag_root:
        root = Path(bag_root).expanduser().resolve()
        if not resolved.is_relative_to(root):
            return f"bag {bag_path} is outside bag_root {bag_root}"
    if resolved.is_dir():
        if is_lerobot_root(resolved):
            return ""
        if not (resolved / "metadata.yaml").is_file() and not any(resolved.glob("*.mcap")) \
                and not any(resolved.glob("*.db3")):
            return (f"{bag_path} is a directory without metadata.yaml, .mcap or .db3 files, nor a LeRobot "
                    "dataset: not a recording")
        return ""
    if resolved.suffix != ".mcap":
        return f"{bag_path} is neither a rosbag2 directory nor an .mcap file"
    return ""


def goal_problem(goal: Any, bag_root: str = "") -> str:
    """The reason ``goal`` cannot be scored, or "" when it can (see the module docstring)."""
    if goal.mode not in MODES:
        return f"mode must be one of {MODES}, got {goal.mode[:64]!r}"
    problem = (
        _text_problem("instruction", goal.instruction, MAX_INSTRUCTION_CHARS, required=True)
        or _text_problem("episode_id", goal.episode_id, MAX_NAME_CHARS)
        or _text_problem("topic", goal.topic, MAX_NAME_CHARS)
        or _text_problem("bag_path", goal.bag_path, MAX_PATH_CHARS)
    )
    if problem:
        return problem
    if int(goal.stride) > MAX_STRIDE:
        return f"stride {goal.stride} exceeds {MAX_STRIDE}"
    if not math.isfinite(float(goal.target_displacement)):
        return "target_displacement must be finite"
    window = goal_window(goal)
    for bound in (window.start, window.end):
        if bound is not None and bound > MAX_STAMP_S:
            return f"time window bound {bound:.0f} s is beyond {MAX_STAMP_S:.0f} s"
    if window.start is not None and window.end is not None and window.end < window.start:
        return f"time window ends ({window.end:.3f}) before it starts ({window.start:.3f})"
    if goal.bag_path:
        return bag_problem(goal.bag_path, bag_root)
    return ""
