# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The demo runs end to end on a small scene, says its weights are random, and resumes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from spatial_mllm_ros.demo import RANDOM_WEIGHTS_NOTICE, main


def test_demo_end_to_end_and_second_run_reuses_results(tmp_path, capsys):
    argv = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--frames", "24",
            "--max-frames", "4", "--reward-stride", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert RANDOM_WEIGHTS_NOTICE in printed
    assert "overall" in printed and "VOC vs true progress" in printed

    results = json.loads((tmp_path / "out" / "eval" / "results.json").read_text())
    questions = json.loads(next((tmp_path / "data").glob("scene-*/questions.json")).read_text())
    assert len(results["rows"]) == len(questions) > 0
    rewards = tmp_path / "out" / "rewards"
    table = pq.read_table(rewards / "data" / "chunk-000" / "file-000.parquet")
    assert table.num_rows == 24 and table.column_names[-2:] == ["next.reward", "progress"]
    (record,) = (rewards / "meta" / "rewards" / "bags").glob("*.json")
    assert json.loads(record.read_text())["scored_frames"] == [0, 8, 16, 23]  # and the last of 24

    # Second run: nothing re-rendered, re-made or re-answered.
    scene_bag = next((tmp_path / "data").glob("scene-*/bag"))
    before = {p: p.stat().st_mtime_ns for p in scene_bag.iterdir()}
    labelled_at = record.stat().st_mtime_ns
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rendering" not in printed and "writing a tiny random checkpoint" not in printed
    assert {p: p.stat().st_mtime_ns for p in scene_bag.iterdir()} == before
    assert record.stat().st_mtime_ns == labelled_at
