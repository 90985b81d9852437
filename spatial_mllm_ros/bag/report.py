# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""PNG report of an offline evaluation: what an engineer looks at after ``spatial-mllm-ros eval``.

Three plots (matplotlib, headless Agg backend): the per-task VSI-Bench scores as bars, a contact
sheet of the frames the selector showed the model, and answer-versus-truth scatter plots for the
numeric tasks. Plus a short ``index.md`` that names them.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC_TASKS = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _answer_in_task_units(row: dict[str, Any]) -> float:
    """The number the scorer reads from an answer, in the VSI-Bench unit of its task; NaN if none."""
    from spatial_mllm_ros.core.answers import UNITS, VSIBENCH_UNITS, parse_answer

    if row.get("error"):
        return float("nan")
    parsed = parse_answer(row["raw_text"], row["question_type"], row.get("options"))
    if parsed.kind not in ("number", "choice") or not math.isfinite(parsed.value):
        return float("nan")
    return parsed.value / UNITS[VSIBENCH_UNITS[row["question_type"]]][1]


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def plot_task_scores(path: Path, summary: dict[str, float], counts: dict[str, int]) -> Path:
    """Bar chart of the per-task scores (percent) with the overall score as the last bar."""
    plt = _pyplot()
    tasks = [task for task in summary if task != "overall"] + ["overall"]
    scores = [100.0 * summary[t] if not math.isnan(summary[t]) else 0.0 for t in tasks]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks)), 4.5), dpi=100)
    colours = ["tab:blue"] * (len(tasks) - 1) + ["tab:orange"]
    bars = axes.bar(range(len(tasks)), scores, color=colours)
    for bar, task, score in zip(bars, tasks, scores, strict=True):
        n = sum(counts.values()) if task == "overall" else counts.get(task, 0)
        axes.annotate(f"{score:.1f}\nn={n}", (bar.get_x() + bar.get_width() / 2, score),
                      ha="center", va="bottom", fontsize=8)
    axes.set_xticks(range(len(tasks)), [t.replace("_", "\n", 1) for t in tasks], fontsize=8)
    axes.set_ylim(0, 110)
    axes.set_ylabel("score (%)")
    axes.set_title("VSI-Bench scores per task")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_contact_sheet(path: Path, frames: list, stamps: list[float], title: str, columns: int = 4) -> Path:
    """Thumbnails of the frames with these stamps, in time order, labelled by time since the first frame."""
    plt = _pyplot()
    by_stamp = {round(frame.stamp, 6): frame for frame in frames}
    chosen = [by_stamp[round(s, 6)] for s in sorted(stamps) if round(s, 6) in by_stamp]
    if not chosen:  # no answer carried stamps (all failed): show evenly spaced frames instead
        chosen = [frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).round().astype(int)]
        title += " (no selection recorded: evenly spaced frames shown)"
    rows = math.ceil(len(chosen) / columns)
    height, width = chosen[0].rgb.shape[:2]
    cell_w = 2.6
    figure_size = (columns * cell_w, rows * cell_w * height / width + 0.6)
    figure, axes_grid = plt.subplots(rows, columns, figsize=figure_size, dpi=100, squeeze=False)
    for index, axes in enumerate(axes_grid.flat):
        axes.axis("off")
        if index < len(chosen):
            axes.imshow(chosen[index].rgb)
            axes.set_title(f"t = {chosen[index].stamp - frames[0].stamp:+.2f} s", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_numeric_scatter(path: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Answer versus ground truth for each numeric task present; None when there is none."""
    tasks = [t for t in NUMERIC_TASKS if any(r["question_type"] == t for r in rows)]
    if not tasks:
        return None
    from spatial_mllm_ros.core.answers import VSIBENCH_UNITS

    plt = _pyplot()
    figure, axes_row = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), dpi=100, squeeze=False)
    for axes, task in zip(axes_row[0], tasks, strict=True):
        task_rows = [r for r in rows if r["question_type"] == task]
        truth = np.array([_float_or_nan(r["ground_truth"]) for r in task_rows])
        predicted = np.array([_answer_in_task_units(r) for r in task_rows])
        parsed = np.isfinite(predicted) & np.isfinite(truth)
        axes.scatter(truth[parsed], predicted[parsed], s=18, color="tab:blue", label="answers")
        unreadable = ~np.isfinite(predicted) & np.isfinite(truth)
        if unreadable.any():  # drawn on the x axis so that they are counted by eye too
            axes.scatter(truth[unreadable], np.zeros(int(unreadable.sum())), s=24, marker="x",
                         color="tab:red", label="unparseable (shown at 0)", clip_on=False)
        finite_truth = truth[np.isfinite(truth)]
        span = np.concatenate([[0.0], finite_truth, predicted[parsed]])
        low, high = float(span.min()), float(span.max())
        high = high if high > low else low + 1.0
        axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="answer = truth")
        unparsed = int((~parsed).sum())
        axes.set_title(f"{task}\n{int(parsed.sum())} parsed, {unparsed} unparseable", fontsize=9)
        unit = VSIBENCH_UNITS[task]
        axes.set_xlabel(f"ground truth ({unit})")
        axes.set_ylabel(f"answer ({unit})")
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(report_dir: Path, rows: list[dict[str, Any]], summary: dict[str, float],
                 task_counts: dict[str, int], frames: list) -> list[Path]:
    """Write the plots and an index into ``report_dir``; return the PNG paths.

    ``summary``/``task_counts`` are the evaluation's per-task scores and question counts, ``rows``
    its per-question rows and ``frames`` the frames the questions were asked about.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_task_scores(report_dir / "task_scores.png", summary, task_counts)]
    selections = Counter(tuple(r["frame_stamps"]) for r in rows if r["frame_stamps"])
    stamps, used_by = selections.most_common(1)[0] if selections else ((), 0)
    method = next((r["selection_method"] for r in rows if tuple(r["frame_stamps"]) == stamps), "")
    title = (f"{len(stamps)} selected of {len(frames)} frames ({method}), used by {used_by} of "
             f"{len(rows)} questions")
    plots.append(plot_contact_sheet(report_dir / "selected_frames.png", frames, list(stamps), title))
    scatter = plot_numeric_scatter(report_dir / "numeric_scatter.png", rows)
    if scatter is not None:
        plots.append(scatter)
    lines = ["# Evaluation report", "", f"{len(rows)} questions about {len(frames)} frames.", "",
             "| task | questions | score (%) |", "|---|---:|---:|"]
    for task, score in summary.items():
        count = sum(task_counts.values()) if task == "overall" else task_counts.get(task, 0)
        lines.append(f"| {task} | {count} | {'n/a' if math.isnan(score) else f'{100 * score:.1f}'} |")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    (report_dir / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return plots
