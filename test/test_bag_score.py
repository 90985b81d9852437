# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros score``: official VSI-Bench scores of a predictions file, worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from spatial_mllm_ros.bag.score import main, score_predictions
from spatial_mllm_ros.cli import main as cli_main

ROWS = [
    {"id": "c1", "question_type": "object_counting", "ground_truth": "3", "prediction": "3"},
    {"id": "c2", "question_type": "object_counting", "ground_truth": "3", "prediction": "The answer is 3"},
    {"id": "e1", "question_type": "object_rel_direction_easy", "ground_truth": "A", "prediction": "A",
     "options": ["A. left", "B. right"]},
    {"id": "m1", "question_type": "object_rel_direction_medium", "ground_truth": "C", "prediction": "B."},
    {"id": "h1", "question_type": "object_rel_direction_hard", "ground_truth": "C", "prediction": "(C)"},
    {"id": "r1", "question_type": "route_planning", "ground_truth": "C", "prediction": "c"},
    {"id": "s1", "question_type": "object_size_estimation", "ground_truth": "100", "prediction": "120 cm"},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_score_by_hand():
    result = score_predictions(ROWS)
    # counting (1 + 0) / 2; direction levels 1, 0, 0 -> 1/3; route 1; size: 0.2 misses theta 0.8 -> 0.6
    assert result["tasks"] == pytest.approx({"object_counting": 50.0, "object_size_estimation": 60.0,
                                             "object_rel_direction": 100 / 3, "route_planning": 100.0})
    assert result["overall"] == pytest.approx((50.0 + 60.0 + 100 / 3 + 100.0) / 4)
    assert [row["score"] for row in result["rows"]] == pytest.approx([1, 0, 1, 0, 0, 1, 0.6])
    assert result["task_counts"] == {"object_counting": 2, "object_rel_direction": 3, "route_planning": 1,
                                     "object_size_estimation": 1}


def test_score_command_prints_the_table_and_writes_scores_json(tmp_path, capsys):
    predictions = _write_jsonl(tmp_path / "predictions.jsonl", ROWS)
    out = tmp_path / "scores.json"
    assert cli_main(["score", str(predictions), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    overall_line = next(line for line in printed.splitlines() if line.startswith("overall"))
    assert overall_line.split()[1:] == ["7", f"{(50.0 + 60.0 + 100 / 3 + 100.0) / 4:.2f}"]
    assert "object_rel_direction" in printed and "object_rel_direction_easy" not in printed
    written = json.loads(out.read_text())
    assert [(row["id"], row["score"]) for row in written["rows"]][:2] == [("c1", 1.0), ("c2", 0.0)]
    assert math.isclose(written["overall"], (50.0 + 60.0 + 100 / 3 + 100.0) / 4)
    assert written["tasks"]["route_planning"] == 100.0


@pytest.mark.parametrize(("text", "message"), [
    ('{"id": 1, "question_type": "object_counting", "ground_truth": "3"}\n',
     "line 1: missing field(s) prediction"),
    ('{"id": 1, "question_type": "counting", "ground_truth": "3", "prediction": "3"}\n',
     "has no VSI-Bench score"),
    ('not json\n', "line 1: not valid JSON"),
    ('', "no rows"),
])
def test_score_command_rejects_bad_files_with_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    assert main([str(path)]) == 2
    assert message in capsys.readouterr().err
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_duplicate_ids_are_refused(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "dup.jsonl", [ROWS[0], ROWS[0]])
    assert main([str(path)]) == 2
    assert "duplicate ids ['c1']" in capsys.readouterr().err
