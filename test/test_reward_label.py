# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros label-rewards``: many bags, resumable, strided, failures reported, atomic files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.label import episode_ids_for, find_bags
from spatial_mllm_ros.reward.lerobot import read_frame_signals
from spatial_mllm_ros.reward.synthetic import write_push_bag

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny")


def _label(checkpoint, out, *inputs, extra=()):
    return cli_main(["label-rewards", *map(str, inputs), "--instruction", "push the red box",
                     "--model", str(checkpoint), "--out", str(out), "--max-frames", "4",
                     "--no-progress", *extra])


def test_find_bags_expands_directories_and_names_episodes(tmp_path):
    write_push_bag(tmp_path / "runs" / "a" / "episode", 2)
    write_push_bag(tmp_path / "runs" / "b" / "episode", 2, storage="mcap")
    write_push_bag(tmp_path / "single", 2)
    bags = find_bags([tmp_path / "runs", tmp_path / "single"])
    assert [b.relative_to(tmp_path.resolve()).as_posix() for b in bags] == [
        "runs/a/episode", "runs/b/episode", "single"]
    assert episode_ids_for(bags) == ["a/episode", "b/episode", "single"]
    with pytest.raises(ValueError, match="no such bag"):
        find_bags([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no bags inside"):
        find_bags([tmp_path / "empty"])


def test_label_rewards_is_resumable_and_strided(checkpoint, tmp_path, capsys):
    bags = tmp_path / "bags"
    write_push_bag(bags / "ep_0", 7)
    write_push_bag(bags / "ep_1", 8, start_stamp=2000.0)
    out = tmp_path / "rewards.parquet"
    assert _label(checkpoint, out, bags, extra=["--stride", "3"]) == 0
    _, document = read_frame_signals(out)
    episodes = {e["episode_id"]: e for e in document["episodes"]}
    assert sorted(episodes) == ["ep_0", "ep_1"]
    frame = pd.read_parquet(out)
    assert list(frame["frame_index"]) == [0, 3, 6, 0, 3, 6, 7]  # the last frame is always scored
    assert list(frame["episode_index"]) == [0, 0, 0, 1, 1, 1, 1]
    assert list(frame["index"]) == list(range(7))
    assert episodes["ep_1"]["num_bag_frames"] == 8 and episodes["ep_1"]["stride"] == 3
    assert document["provenance"]["instruction"] == "push the red box"
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["num_episodes"] == 2 and summary["num_rows"] == 7 and summary["failed_bags"] == {}
    first_rows = frame.copy()

    # a new bag appears: only it is labelled; the old rows stay as they were
    write_push_bag(bags / "ep_2", 4, start_stamp=3000.0)
    capsys.readouterr()
    assert _label(checkpoint, out, bags, extra=["--stride", "3"]) == 0
    assert "3 bag(s), 2 already in" in capsys.readouterr().err
    frame = pd.read_parquet(out)
    pd.testing.assert_frame_equal(frame.iloc[:7].reset_index(drop=True), first_rows)
    assert list(frame["frame_index"].iloc[7:]) == [0, 3] and set(frame["episode_index"].iloc[7:]) == {2}

    # nothing left to do
    assert _label(checkpoint, out, bags, extra=["--stride", "3"]) == 0
    assert "0 to label" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bags", "rewards.json", "rewards.parquet"]


def test_broken_bag_is_reported_and_the_rest_labelled(checkpoint, tmp_path, capsys):
    write_push_bag(tmp_path / "good", 3)
    broken = tmp_path / "broken"
    write_push_bag(broken, 3)
    db = next(broken.glob("*.db3"))
    db.write_bytes(b"not a database")
    out = tmp_path / "rewards.parquet"
    assert _label(checkpoint, out, tmp_path / "good", broken) == 1
    assert "FAILED" in capsys.readouterr().err
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [e["episode_id"] for e in summary["episodes"]] == ["good"]
    assert list(summary["failed_bags"]) == [str(broken.resolve())]


def test_bad_arguments_exit_with_a_reason(checkpoint, tmp_path, capsys):
    write_push_bag(tmp_path / "bag", 2)
    with pytest.raises(SystemExit) as exit_info:
        _label(checkpoint, tmp_path / "r.parquet", tmp_path / "bag", extra=["--target", "0.2"])
    assert exit_info.value.code == 2
    assert "--target needs --mode displacement" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _label(checkpoint, tmp_path / "r.parquet", tmp_path / "nope")
    assert "no such bag" in capsys.readouterr().err


def test_displacement_labels_with_target(checkpoint, tmp_path):
    write_push_bag(tmp_path / "bag", 3)
    out = tmp_path / "r.parquet"
    assert _label(checkpoint, out, tmp_path / "bag", extra=["--mode", "displacement", "--target", "0.3"]) == 0
    _, document = read_frame_signals(out)
    assert document["provenance"]["method"] == "displacement(target=0.3m)"
    progress = pd.read_parquet(out)["progress"].to_numpy()
    assert progress[0] == 0.0 and np.all(np.isnan(progress) | ((progress >= 0) & (progress <= 1)))


def test_scene_maker_recording_end_to_end(checkpoint, tmp_path):
    from spatial_mllm_ros.bag.scene import write_scene
    from spatial_mllm_ros.reward.voc import value_order_correlation

    paths = write_scene(tmp_path / "scene", seed=3, width=64, height=48, num_frames=10)
    scene = json.loads(paths.scene_json.read_text())
    out = tmp_path / "rewards.parquet"
    instruction = f"walk up to the {scene['target']['name']}"
    assert cli_main(["label-rewards", str(paths.bag), "--instruction", instruction, "--model",
                     str(checkpoint), "--out", str(out), "--max-frames", "4", "--stride", "2",
                     "--no-progress"]) == 0
    frame = pd.read_parquet(out)
    assert list(frame["frame_index"]) == [0, 2, 4, 6, 8, 9]
    summary = json.loads(out.with_suffix(".json").read_text())
    (episode,) = summary["episodes"]
    assert episode["episode_id"] == "bag" and episode["num_bag_frames"] == 10
    assert episode["start_stamp"] == pytest.approx(scene["frames"][0]["stamp"])
    voc = value_order_correlation(frame["progress"].to_numpy(), frame["frame_index"].to_numpy())
    assert (episode["voc"] is None and np.isnan(voc)) or episode["voc"] == pytest.approx(voc)
    # the scene's own ground truth, read the way a user would check a real model against it
    truth = np.array([f["target_progress"] for f in scene["frames"]])[frame["frame_index"]]
    assert truth[-1] == pytest.approx(1.0) and truth[0] == pytest.approx(0.0)


def test_model_failure_is_not_written_so_a_rerun_retries_the_bag(checkpoint, tmp_path):
    from spatial_mllm_ros.reward.label import LabelOptions, label_bags, load_annotator, pending_bags

    write_push_bag(tmp_path / "bags" / "ep", 3)
    out = tmp_path / "rewards.parquet"
    options = LabelOptions(instruction="push the red box")
    broken = load_annotator(str(checkpoint), max_frames=4)
    broken.qa.close()  # every generate_text now raises "no model loaded"
    work = pending_bags(find_bags([tmp_path / "bags"]), out)
    failures = label_bags(broken, work, out, options, show_progress=False)
    assert list(failures.values()) == [
        f"{(tmp_path / 'bags' / 'ep').resolve()}: every model call failed: model call failed: "
        "ValueError: no model loaded"]
    assert not out.exists()
    working = load_annotator(str(checkpoint), max_frames=4)
    assert label_bags(working, pending_bags(find_bags([tmp_path / "bags"]), out), out, options,
                      show_progress=False) == {}
    working.qa.close()
    assert list(pd.read_parquet(out)["frame_index"]) == [0, 1, 2]
