# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VSI-Bench scoring: the official rules, a lenient reading next to them, and the aggregation.

Engineers compare a model against published VSI-Bench numbers, so the headline score is computed
exactly as the benchmark's own evaluation code does (thinking-in-space,
``lmms_eval/tasks/vsibench/utils.py``): :func:`official_score`. Its rules, as facts:

- the prediction is cut to its first token: split on the space character, trailing '.' stripped,
  surrounding white space stripped ("B. chair" -> "B", "(C)" stays "(C)", "The answer is B" -> "The");
- multiple choice: that token equals the ground truth string, case-insensitively;
- numeric tasks: Python ``float()`` of that token and of the ground truth ("229.84 meters" -> 229.84,
  read as the number whatever the unit; "three" -> unreadable -> 0), then Mean Relative Accuracy
  ``mean(abs(p - g) / g <= 1 - np.linspace(0.5, 0.95, 10))`` in floating point, so an error that lands
  a hair above a threshold after the subtraction misses it (1.3 vs 1.0 at theta 0.70);
- the three ``object_rel_direction_*`` levels are averaged into one task; overall is the mean of the
  task scores; reported in percent.

Where upstream raises instead of scoring (a ground truth of 0 divides by zero), the official score
here is 0, the benchmark's worst case.

The lenient scores (:func:`score_question`) read answers with :func:`answers.parse_answer` ("The
answer is B", "6 feet", "three" all count) and compare exactly in rational terms: thresholds are
whole twentieths and an error equal to a threshold counts; a ground truth of 0 scores 1 only for an
exact 0. They say how good the answers are; only the official ones compare with published numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from spatial_mllm_ros.core.answers import UNITS, VSIBENCH_UNITS, parse_answer, vsibench_first_token
from spatial_mllm_ros.core.prompts import (
    MULTIPLE_CHOICE_TASK_TYPES,
    NUMERIC_TASK_TYPES,
    OPTION_LETTERS,
    TASK_TYPES,
    option_texts,
    split_option,
)

# theta = k / 20 for k = 10..19: 0.50, 0.55, ..., 0.95
_THRESHOLD_TWENTIETHS = tuple(range(10, 20))
MRA_THRESHOLDS: tuple[float, ...] = tuple(k / 20 for k in _THRESHOLD_TWENTIETHS)

# Relative floating-point slack for "error equals the threshold" (unit conversions and
# subtractions of decimal inputs are off by a few ulps).
_EDGE_RTOL = 1e-9

# Upstream builds its thresholds as np.linspace(.5, .95, int((.95 - .5) / .05 + 2)); the same call
# gives the same ten doubles (0.6499999999999999 ... rather than k/20).
OFFICIAL_MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))
_OFFICIAL_MRA_LIMITS = 1 - OFFICIAL_MRA_THRESHOLDS

REL_DIRECTION_LEVELS = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
)
REL_DIRECTION_TASK = "object_rel_direction"


def mean_relative_accuracy(pred: float | None, gt: float) -> float:
    """VSI-Bench MRA of a numeric prediction: the fraction of the 10 thresholds it meets.

    ``pred`` None/NaN/inf scores 0. ``gt`` must be finite and >= 0 (ValueError otherwise); for
    ``gt == 0`` only an exact 0 scores (1.0).
    """
    gt = float(gt)
    if not math.isfinite(gt) or gt < 0:
        raise ValueError(f"ground truth must be a finite number >= 0, got {gt!r}")
    if pred is None:
        return 0.0
    pred = float(pred)
    if not math.isfinite(pred):
        return 0.0
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    scaled_error = 20.0 * abs(pred - gt)
    hits = 0
    for k in _THRESHOLD_TWENTIETHS:
        allowed = (20 - k) * gt  # 20 * gt * (1 - k/20), exact in rational terms
        if scaled_error <= allowed or math.isclose(scaled_error, allowed, rel_tol=_EDGE_RTOL):
            hits += 1
    return hits / len(_THRESHOLD_TWENTIETHS)


def official_to_float(text) -> float | None:
    """Upstream's ``to_float``: Python ``float()`` of the value, None when it raises."""
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        return None


def official_mean_relative_accuracy(pred: float | None, gt: float | None) -> float:
    """MRA computed as upstream computes it (float relative error against ``1 - linspace``).

    None for either value scores 0 (upstream catches the TypeError); a ground truth of 0 scores 0
    (upstream raises ZeroDivisionError). NaN and infinities fail every comparison, as in numpy.
    """
    if pred is None or gt is None or gt == 0:
        return 0.0
    relative_error = abs(pred - gt) / gt
    return float(np.mean(relative_error <= _OFFICIAL_MRA_LIMITS))


def official_score(task_type: str, prediction: str | None, ground_truth) -> float:
    """One answer scored by the official VSI-Bench rules (module docstring), in [0, 1].

    ``ground_truth`` is used as the benchmark stores it: the option letter for multiple choice, the
    number (as text or a number) for numeric tasks. A missing prediction (None) scores 0.
    """
    token = vsibench_first_token(prediction) if isinstance(prediction, str) else ""
    if task_type in MULTIPLE_CHOICE_TASK_TYPES:
        return 1.0 if token.lower() == str(ground_truth).lower() else 0.0
    if task_type in NUMERIC_TASK_TYPES:
        return official_mean_relative_accuracy(official_to_float(token), official_to_float(ground_truth))
    known = ", ".join(TASK_TYPES)
    raise ValueError(f"task type {task_type!r} has no VSI-Bench score; expected one of {known}")


def exact_choice_accuracy(pred: str | None, gt: str) -> float:
    """1.0 when the predicted option letter equals the true one (case-insensitive), else 0.0."""
    if not pred:
        return 0.0
    return 1.0 if pred.strip().upper() == gt.strip().upper() else 0.0


def ground_truth_letter(ground_truth: str, options: Sequence[str] | None = None) -> str:
    """The option letter of a multiple-choice ground truth: "B", "B." / "(b)", "B. chair" or "chair"."""
    text = str(ground_truth).strip()
    letter, rest = split_option(text)
    if letter is not None and (not rest or (options and text in [o.strip() for o in options])):
        return letter
    if len(text) == 1 and text.isalpha():
        return text.upper()
    if options:
        texts = [t.lower() for t in option_texts(options)]
        if text.lower() in texts:
            return OPTION_LETTERS[texts.index(text.lower())]
    raise ValueError(f"ground truth {ground_truth!r} is neither an option letter nor an option's text")


def score_question(
    task_type: str,
    prediction_text: str | None,
    ground_truth: str | float,
    options: Sequence[str] | None = None,
    *,
    strict_vsibench: bool = False,
) -> float:
    """Score one answer in [0, 1]: leniently, or with ``strict_vsibench`` by the official rules.

    ``ground_truth`` is in VSI-Bench units: the option letter for multiple choice (or "B. chair" /
    the option's text, read back to its letter), metres for distances, centimetres for object sizes,
    square metres for room sizes, a count for counting; ValueError when it does not fit the task.
    The prediction is read with :func:`answers.parse_answer` (units converted), or, with
    ``strict_vsibench``, by :func:`official_score`.
    """
    if task_type in MULTIPLE_CHOICE_TASK_TYPES:
        truth = ground_truth_letter(str(ground_truth), options)
        if strict_vsibench:
            return official_score(task_type, prediction_text, truth)
        parsed = parse_answer(prediction_text or "", task_type, options)
        return exact_choice_accuracy(parsed.choice_letter, truth)
    if task_type in NUMERIC_TASK_TYPES:
        try:
            truth_value = float(ground_truth)
        except (TypeError, ValueError):
            raise ValueError(f"ground truth {ground_truth!r} of a {task_type} question is not a number") \
                from None
        if not math.isfinite(truth_value) or truth_value < 0:
            raise ValueError(f"ground truth of a {task_type} question must be finite and >= 0, "
                             f"got {truth_value}")
        if strict_vsibench:
            return official_score(task_type, prediction_text, ground_truth)
        parsed = parse_answer(prediction_text or "", task_type, options)
        factor = UNITS[VSIBENCH_UNITS[task_type]][1]  # e.g. object sizes: centimetres -> metres
        value = parsed.value if parsed.kind in ("number", "choice") else None
        return mean_relative_accuracy(value, truth_value * factor)
    known = ", ".join(TASK_TYPES)
    raise ValueError(f"task type {task_type!r} has no VSI-Bench score; expected one of {known}")


def aggregate_vsibench(rows: Iterable[Mapping]) -> dict[str, float]:
    """Per-task mean scores plus "overall", as VSI-Bench reports them.

    Each row has ``question_type`` and either ``score`` (NaN counts as 0) or ``prediction`` +
    ``ground_truth`` (+ ``options``), which are scored with :func:`score_question`. The three
    ``object_rel_direction_*`` levels become one task "object_rel_direction" (the mean of the level
    means present); "overall" is the mean of the task scores (NaN when there are no rows).
    """
    per_task: dict[str, list[float]] = {}
    for row in rows:
        task = row.get("question_type")
        if task not in TASK_TYPES:
            raise ValueError(f"row {row.get('id', '?')}: unknown question_type {task!r}")
        if "score" in row and row["score"] is not None:
            score = float(row["score"])
            score = 0.0 if math.isnan(score) else score
        else:
            score = score_question(task, row.get("prediction"), row["ground_truth"], row.get("options"))
        per_task.setdefault(task, []).append(score)

    result = {task: sum(scores) / len(scores) for task, scores in per_task.items()}
    levels = [result.pop(level) for level in REL_DIRECTION_LEVELS if level in result]
    if levels:
        result[REL_DIRECTION_TASK] = sum(levels) / len(levels)
    ordered = {task: result[task] for task in _REPORT_ORDER if task in result}
    ordered["overall"] = sum(ordered.values()) / len(ordered) if ordered else math.nan
    return ordered


_REPORT_ORDER = tuple(
    dict.fromkeys(REL_DIRECTION_TASK if t in REL_DIRECTION_LEVELS else t for t in TASK_TYPES)
)
