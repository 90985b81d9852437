# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros score``: official VSI-Bench scores of any predictions file.

Answers produced elsewhere (another model, another run, lmms-eval logs turned into rows) are
compared with published numbers only when they are scored by the benchmark's own rules
(:func:`spatial_mllm_ros.core.metrics.official_score`). Input rows carry ``id``, ``question_type``,
``ground_truth``, ``prediction`` and optionally ``options``; output is the per-task table on stdout
and, with ``--out``, a JSON file with every row's score and the aggregate in percent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from spatial_mllm_ros.core.atomic import write_json_atomic
from spatial_mllm_ros.core.metrics import (
    REL_DIRECTION_LEVELS,
    REL_DIRECTION_TASK,
    aggregate_vsibench,
    official_score,
)
from spatial_mllm_ros.core.prompts import TASK_TYPES

REQUIRED_FIELDS = ("id", "question_type", "ground_truth", "prediction")


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file (or a JSON list); ValueError naming the file and line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"predictions file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        entries = [(row, f"{path} row {i}") for i, row in enumerate(data)]
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append((json.loads(line), f"{path} line {number}"))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path} line {number}: not valid JSON ({error})") from None
    rows = []
    for row, where in entries:
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object with {', '.join(REQUIRED_FIELDS)}")
        missing = [key for key in REQUIRED_FIELDS if key not in row]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        if row["question_type"] not in TASK_TYPES:
            raise ValueError(f"{where}: question_type {row['question_type']!r} has no VSI-Bench score; "
                             f"expected one of {', '.join(TASK_TYPES)}")
        rows.append(row)
    duplicates = [key for key, n in Counter(str(r["id"]) for r in rows).items() if n > 1]
    if duplicates:
        raise ValueError(f"{path}: duplicate ids {duplicates[:5]}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def score_predictions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Official score per row, and the aggregate in percent (``overall`` and ``tasks``)."""
    scored = [{"id": row["id"], "question_type": row["question_type"],
               "score": official_score(row["question_type"], row["prediction"], row["ground_truth"])}
              for row in rows]
    aggregate = aggregate_vsibench(scored)
    counts = Counter(REL_DIRECTION_TASK if r["question_type"] in REL_DIRECTION_LEVELS else r["question_type"]
                     for r in scored)
    return {
        "rules": "official VSI-Bench (thinking-in-space lmms_eval/tasks/vsibench/utils.py)",
        "overall": 100.0 * aggregate.pop("overall"),
        "tasks": {task: 100.0 * value for task, value in aggregate.items()},
        "task_counts": dict(counts),
        "rows": scored,
    }


def format_scores(result: dict[str, Any]) -> str:
    """The per-task table (percent), overall last."""
    tasks = list(result["tasks"])
    width = max([len(t) for t in tasks] + [len("overall")])
    lines = [f"{'task'.ljust(width)}  {'n':>5}  official", f"{'-' * width}  {'-' * 5}  --------"]
    for task in tasks:
        lines.append(f"{task.ljust(width)}  {result['task_counts'][task]:>5}  {result['tasks'][task]:8.2f}")
    overall = result["overall"]
    lines.append(f"{'overall'.ljust(width)}  {len(result['rows']):>5}  "
                 + ("     nan" if math.isnan(overall) else f"{overall:8.2f}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros score PREDICTIONS.jsonl [--out scores.json]``: exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros score",
                                     description="Score predictions with the official VSI-Bench rules.")
    parser.add_argument("predictions", help="JSON Lines (or JSON list) rows with id, question_type, "
                                            "ground_truth, prediction and optional options")
    parser.add_argument("--out", help="write every row's score and the aggregate (percent) to this JSON file")
    args = parser.parse_args(argv)
    try:
        result = score_predictions(load_predictions(args.predictions))
    except ValueError as error:
        print(f"score: {error}", file=sys.stderr)
        return 2
    print(format_scores(result))
    if args.out:
        write_json_atomic(Path(args.out), result)
        print(f"scores: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
