# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Trajectory reward annotator: per-frame task progress and rewards from the spatial model.

Multi-SpatialMLLM (arXiv 2505.17015) showed that a multi-frame spatial model can label robot
trajectories: show it the first frame and frame k and ask how far the object has moved; the trend
of the answers is the task's progress. This module turns that idea into per-frame signals a policy
learner can use (progress in [0, 1], reward = change in progress, an episode score) and says, per
frame, why a value is missing instead of inventing one.

How frame pairs map to model calls
----------------------------------
The scored frames are ``0, stride, 2*stride, ...`` plus the last frame (so the episode score
always reflects the end). Frame 0 is the reference: its progress is 0 by definition and costs no
model call. Every other scored frame k is one *pair* (frame 0, frame k), i.e. one prompt.

Pairs are grouped into calls of up to ``frames_per_call`` pairs: one call shows the model the
frame set ``[frame 0, frame k1, ..., frame kc]`` (time-ordered, with their real time stamps) and
asks ``c`` prompts, one per pair, each naming its frame by its time since frame 0 ("the frame at
t = 2.40 s"; Qwen2.5-VL positions video frames by their real time).
``SpatialQA.generate_text(frame_set, prompts)`` encodes the frame set once (vision tower +
spatial encoder + connector) and decodes the prompts as one batch, so a trajectory of
``M`` scored frames costs ``ceil((M - 1) / frames_per_call)`` visual encodings instead of
``M - 1``. By default ``frames_per_call`` is the engine's ``max_frames - 1``, i.e. the largest
frame set the model takes in one go; ``frames_per_call=1`` reproduces the literal
Multi-SpatialMLLM pair prompting (each call sees exactly frame 0 and frame k).
``batch_queries=False`` sends each prompt in its own call (the naive baseline of the benchmark).

Modes
-----
``progress``: "how much of the task is complete" as a percentage; progress = percent / 100,
clipped to [0, 1]. ``displacement``: "how far did <subject> move", in millimetres with the value in
backticks (Multi-SpatialMLLM's answer style); parsed to metres; progress = distance / target
(clipped to [0, 1]) with a target, else distance / largest distance of the trajectory.

An answer that cannot be parsed gives NaN progress for that frame and a non-empty reason; it is
never turned into 0. A failing model call marks its frames the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from spatial_mllm_ros.core.answers import parse_answer
from spatial_mllm_ros.reward.voc import value_order_correlation

if TYPE_CHECKING:
    from spatial_mllm_ros.core.frames import Frame

MODES = ("progress", "displacement")
MODEL_CALL_FAILED = "model call failed"

PROGRESS_PROMPT = (
    'These frames show a robot carrying out the task: "{instruction}". The first frame '
    "(t = 0.0 s) shows the start of the task. How much of the task is complete in the frame at "
    "t = {offset:.2f} s? Answer with a percentage from 0 to 100, with the number in backticks, "
    "like `40`."
)
DISPLACEMENT_PROMPT = (
    'These frames show a robot carrying out the task: "{instruction}". How far did {subject} '
    "move between the first frame (t = 0.0 s) and the frame at t = {offset:.2f} s? Answer in "
    "millimetres, with the number in backticks, like `120`."
)
# How parse_answer reads each mode: percentages as an open question's first number (so "no" or
# "none" never becomes 0 %), displacements as lengths with bare numbers in millimetres, as asked.
_PARSE = {"progress": (None, None), "displacement": ("object_abs_distance", "mm")}
_VALUE_UNIT = {"progress": "percent", "displacement": "m"}


class TextGenerator(Protocol):
    """What the annotator needs from the engine (``spatial_mllm_ros.engine.SpatialQA``)."""

    def generate_text(self, frames: list[Frame], prompts: list[str]) -> list[str]:
        """Raw generated text per prompt, all about the same frame set."""


@dataclass
class TrajectoryScores:
    """Per-frame scores of one trajectory; all arrays have one entry per scored frame.

    Attributes:
        frame_indices: position of each scored frame in the input list (int64).
        stamps: their stamps in seconds (float64).
        progress: estimated completion in [0, 1]; NaN where unknown (see ``reasons``).
        reward: ``progress[i] - progress[i-1]``, 0 for the first frame, NaN next to a NaN.
        values: the parsed model answer (percent in progress mode, metres in displacement mode;
            0 for the reference frame, NaN when unparseable).
        raw_answers: the model's raw text ("" for the reference frame and unscored frames).
        reasons: why a frame has no value ("" when it has one).
        episode_score: last valid progress, NaN when there is none.
        error: summary of what went wrong ("" when every frame was scored).
        cancelled: True when scoring stopped early on request.
        model_calls: number of ``generate_text`` calls made.
        elapsed_s: wall time of scoring.
    """

    mode: str
    instruction: str
    model_id: str
    target: float | None
    stride: int
    frame_indices: np.ndarray
    stamps: np.ndarray
    progress: np.ndarray
    reward: np.ndarray
    values: np.ndarray
    raw_answers: list[str]
    reasons: list[str]
    episode_score: float
    error: str = ""
    cancelled: bool = False
    model_calls: int = 0
    elapsed_s: float = 0.0
    value_unit: str = field(default="")

    @property
    def method(self) -> str:
        """``"<mode>/<model id>"``, as in ``TrajectoryReward.method``."""
        return f"{self.mode}/{self.model_id}"

    @property
    def voc(self) -> float:
        """Value-order correlation of the progress with the frame order (NaN when undefined)."""
        return value_order_correlation(self.progress, self.frame_indices)

    @property
    def model_failure(self) -> str:
        """The first failure reason when EVERY model call failed (a set-up problem), else ""."""
        asked = self.reasons[1:]
        failed = [r for r in asked if r.startswith(MODEL_CALL_FAILED)]
        return failed[0] if failed and len(failed) == len(asked) else ""

    @property
    def num_invalid(self) -> int:
        """Scored frames without a progress value."""
        return int(np.count_nonzero(~np.isfinite(self.progress)))

    def summary(self) -> dict:
        """JSON-friendly episode summary (NaN stays float; writers turn it into null)."""
        return {"mode": self.mode, "instruction": self.instruction, "model_id": self.model_id,
                "target": self.target, "stride": self.stride, "num_scored": int(self.progress.size),
                "num_invalid": self.num_invalid, "episode_score": float(self.episode_score),
                "voc": float(self.voc), "error": self.error, "cancelled": self.cancelled,
                "model_calls": self.model_calls, "elapsed_s": round(self.elapsed_s, 4)}


def scored_indices(num_frames: int, stride: int) -> list[int]:
    """``0, stride, 2*stride, ...`` plus the last frame."""
    if num_frames <= 0:
        return []
    indices = list(range(0, num_frames, stride))
    if indices[-1] != num_frames - 1:
        indices.append(num_frames - 1)
    return indices


def rewards_from_progress(progress: np.ndarray) -> np.ndarray:
    """``progress[i] - progress[i-1]``, 0 for the first frame; NaN propagates to both neighbours."""
    progress = np.asarray(progress, dtype=np.float64)
    reward = np.empty_like(progress)
    if progress.size:
        reward[0] = 0.0 if np.isfinite(progress[0]) else np.nan
        reward[1:] = np.diff(progress)
    return reward


def episode_score(progress: np.ndarray) -> float:
    """The last finite progress value, NaN when there is none."""
    finite = np.flatnonzero(np.isfinite(progress))
    return float(progress[finite[-1]]) if finite.size else float("nan")


def parse_value(text: str, mode: str) -> tuple[float, str]:
    """The number in one answer (percent or metres) and "" or, when unusable, NaN and a reason."""
    task_type, default_unit = _PARSE[mode]
    parsed = parse_answer(text, task_type, default_unit=default_unit)
    if parsed.kind != "number" or not math.isfinite(parsed.value):
        reason = parsed.reason or f"no number in the answer ({parsed.kind})"
        return float("nan"), f"unparseable answer {text[:60]!r}: {reason}"
    if mode == "progress" and parsed.unit not in ("", "count"):
        return float("nan"), f"answer {text[:60]!r} is in {parsed.unit}, not a percentage"
    if parsed.value < 0:
        return float("nan"), f"negative {'percentage' if mode == 'progress' else 'distance'} in {text[:60]!r}"
    return float(parsed.value), ""


def progress_from_values(values: np.ndarray, mode: str, target: float | None) -> np.ndarray:
    """Map parsed answers to progress in [0, 1] (NaN stays NaN).

    Progress mode: percent / 100. Displacement mode: distance / target with a target, else
    distance / the trajectory's largest distance (all zeros when nothing moved).
    """
    values = np.asarray(values, dtype=np.float64)
    if mode == "progress":
        scaled = values / 100.0
    elif target is not None:
        scaled = values / target
    else:
        largest = np.nanmax(values) if np.isfinite(values).any() else float("nan")
        scaled = values / largest if largest > 0 else np.where(np.isfinite(values), 0.0, np.nan)
    return np.clip(scaled, 0.0, 1.0)


class RewardAnnotator:
    """Scores trajectories with a :class:`TextGenerator` (normally a ``SpatialQA`` engine).

    Args:
        qa: the engine; shared, so the annotator never closes it.
        frames_per_call: pairs (frame 0, frame k) per model call; default the engine's
            ``max_frames - 1`` (at least 1).
        batch_queries: send all prompts of a call together (True) or one per call (False).
        subject: what moves, for displacement prompts.
    """

    def __init__(self, qa: TextGenerator, frames_per_call: int | None = None, batch_queries: bool = True,
                 subject: str = "the object the robot is manipulating"):
        if frames_per_call is None:
            frames_per_call = max(1, int(getattr(qa, "max_frames", 16)) - 1)
        if int(frames_per_call) < 1:
            raise ValueError(f"frames_per_call must be >= 1, got {frames_per_call}")
        self.qa = qa
        self.frames_per_call = int(frames_per_call)
        self.batch_queries = bool(batch_queries)
        self.subject = subject

    @property
    def model_id(self) -> str:
        """The engine's model id ("unknown" when it has none)."""
        return str(getattr(self.qa, "model_id", "") or "unknown")

    def prompt(self, mode: str, instruction: str, offset_s: float) -> str:
        """The question for the pair (frame 0, frame at ``offset_s`` seconds after it)."""
        template = PROGRESS_PROMPT if mode == "progress" else DISPLACEMENT_PROMPT
        return template.format(instruction=instruction.strip(), offset=offset_s, subject=self.subject)

    def score(self, frames: Sequence[Frame], instruction: str, mode: str = "progress",
              target: float | None = None, stride: int = 1,
              progress_callback: Callable[[int, int], None] | None = None,
              cancel_event: threading.Event | None = None) -> TrajectoryScores:
        """Score a time-ordered trajectory; see the module docstring for the call pattern.

        Args:
            frames: the trajectory, in time order.
            instruction: the task, in words.
            mode: "progress" or "displacement".
            target: displacement mode only: distance in metres that means "done" (None: normalise
                by the largest distance).
            stride: score every stride-th frame (the last frame is always scored).
            progress_callback: called as ``(frames_done, frames_total)`` over scored frames.
            cancel_event: when set, scoring stops before the next model call; unscored frames
                get NaN with reason "cancelled" and ``cancelled`` is True.

        Raises:
            ValueError: bad arguments (empty trajectory or instruction, unknown mode, stride < 1,
                non-positive target, frames out of time order).
        """
        started = time.perf_counter()
        frames = list(frames)
        self._validate(frames, instruction, mode, target, stride)
        indices = scored_indices(len(frames), int(stride))
        total = len(indices)
        values = np.full(total, np.nan)
        values[0] = 0.0  # the reference frame: nothing has happened yet by definition
        raw = [""] * total
        reasons = ["" for _ in range(total)]
        origin = frames[0].stamp
        prompts = [self.prompt(mode, instruction, frames[i].stamp - origin) for i in indices]
        calls = 0
        done = 1
        cancelled = False
        if progress_callback is not None:
            progress_callback(done, total)
        for shown, chunk in self._calls(total):
            if cancel_event is not None and cancel_event.is_set():
                cancelled = True
                break
            frame_set = [frames[0]] + [frames[indices[j]] for j in shown]
            calls += 1
            try:
                texts = self.qa.generate_text(frame_set, [prompts[j] for j in chunk])
                if len(texts) != len(chunk):
                    raise RuntimeError(f"engine returned {len(texts)} answers for {len(chunk)} prompts")
            except Exception as exc:  # a failed call marks its frames, the rest still count
                for j in chunk:
                    reasons[j] = f"{MODEL_CALL_FAILED}: {type(exc).__name__}: {exc}"
            else:
                for j, text in zip(chunk, texts, strict=True):
                    raw[j] = text
                    values[j], reasons[j] = parse_value(text, mode)
            done += len(chunk)
            if progress_callback is not None:
                progress_callback(done, total)
        if cancelled:
            for j in range(1, total):
                if not raw[j] and not reasons[j]:
                    reasons[j] = "cancelled"
        progress = progress_from_values(values, mode, target)
        return TrajectoryScores(
            mode=mode, instruction=instruction, model_id=self.model_id, target=target,
            stride=int(stride), frame_indices=np.asarray(indices, dtype=np.int64),
            stamps=np.asarray([frames[i].stamp for i in indices], dtype=np.float64),
            progress=progress, reward=rewards_from_progress(progress), values=values,
            raw_answers=raw, reasons=reasons, episode_score=episode_score(progress),
            error=self._error_summary(indices, reasons, cancelled, done, total), cancelled=cancelled,
            model_calls=calls, elapsed_s=time.perf_counter() - started, value_unit=_VALUE_UNIT[mode])

    def score_streamed(self, scored: Iterable[tuple[int, Frame]], instruction: str, mode: str = "progress",
                       target: float | None = None) -> TrajectoryScores:
        """Score ``(position, frame)`` pairs as they arrive, the first being the reference frame.

        Holds the reference and at most one model call's frames: every ``frames_per_call`` frames
        are scored with the reference as one :meth:`score` call, so the calls, prompts and answers
        are those of :meth:`score` on the whole list. Progress (and the displacement normalisation)
        is computed over all answers at the end. ``frame_indices`` are the given positions.
        """
        started = time.perf_counter()
        pairs = iter(scored)
        first = next(pairs, None)
        if first is None:
            raise ValueError("cannot score an empty trajectory (no frames)")
        positions, reference = [first[0]], first[1]
        parts: list[TrajectoryScores] = []
        group: list[Frame] = []

        def score_group() -> None:
            parts.append(self.score([reference, *group], instruction, mode=mode, target=target))
            group.clear()

        for position, frame in pairs:
            if position <= positions[-1]:
                raise ValueError(f"frame positions must increase, got {position} after {positions[-1]}")
            positions.append(position)
            group.append(frame)
            if len(group) == self.frames_per_call:
                score_group()
        if group or not parts:
            score_group()
        values = np.concatenate([[0.0], *(part.values[1:] for part in parts)])
        raw = ["", *(text for part in parts for text in part.raw_answers[1:])]
        reasons = ["", *(reason for part in parts for reason in part.reasons[1:])]
        stamps = np.concatenate([[reference.stamp], *(part.stamps[1:] for part in parts)])
        progress = progress_from_values(values, mode, target)
        total = len(positions)
        return TrajectoryScores(
            mode=mode, instruction=instruction, model_id=self.model_id, target=target, stride=1,
            frame_indices=np.asarray(positions, dtype=np.int64), stamps=stamps, progress=progress,
            reward=rewards_from_progress(progress), values=values, raw_answers=raw, reasons=reasons,
            episode_score=episode_score(progress),
            error=self._error_summary(positions, reasons, False, total, total),
            model_calls=sum(part.model_calls for part in parts), elapsed_s=time.perf_counter() - started,
            value_unit=_VALUE_UNIT[mode])

    def _calls(self, total: int) -> list[tuple[list[int], list[int]]]:
        """Model calls as (positions shown after frame 0, positions asked about), over 1..total-1."""
        size = self.frames_per_call
        groups = [list(range(start, min(start + size, total))) for start in range(1, total, size)]
        if self.batch_queries:
            return [(group, group) for group in groups]
        # Naive pattern: the same frame sets, one prompt (and so one encoding) per call.
        return [(group, [j]) for group in groups for j in group]

    @staticmethod
    def _validate(frames: list, instruction: str, mode: str, target: float | None, stride: int) -> None:
        if not frames:
            raise ValueError("cannot score an empty trajectory (no frames)")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        if target is not None and not (math.isfinite(target) and target > 0):
            raise ValueError(f"target must be a positive distance in metres, got {target!r}")
        if target is not None and mode != "displacement":
            raise ValueError("target only applies to mode 'displacement'")
        stamps = np.asarray([f.stamp for f in frames], dtype=np.float64)
        if not np.isfinite(stamps).all():
            raise ValueError("frame stamps must be finite")
        if np.any(np.diff(stamps) < 0):
            raise ValueError("frames must be in time order (stamps non-decreasing)")

    @staticmethod
    def _error_summary(indices: list[int], reasons: list[str], cancelled: bool, done: int,
                       total: int) -> str:
        bad = [(indices[j], r) for j, r in enumerate(reasons) if r and r != "cancelled"]
        parts = []
        if cancelled:
            parts.append(f"cancelled after scoring {done} of {total} frames")
        if bad:
            shown = "; ".join(f"frame {i}: {r}" for i, r in bad[:3])
            more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
            parts.append(f"{len(bad)} of {total} frames have no value: {shown}{more}")
        return " | ".join(parts)
