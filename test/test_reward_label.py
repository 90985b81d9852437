# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``label-rewards``: LeRobot v3.0 in, LeRobot v3.0 out; rosbag2 in, LeRobot v3.0 out.

The source is ``lerobot_v3_tiny`` (written by LeRobot's own code, see its README); each result is
checked file by file against that layout. The model is the real engine on a tiny random
checkpoint, except in the ground-truth test, where a scripted stand-in answers instead of the
model (the only test double here): it measures how far the white block moved between the frames
it is shown, so its answers are right exactly when the right frames reached it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.annotator import RewardAnnotator
from spatial_mllm_ros.reward.episodes import LabelOptions
from spatial_mllm_ros.reward.label import episode_ids_for, find_bags, label_dataset
from spatial_mllm_ros.reward.lerobot import LeRobotSource, feature_stats
from spatial_mllm_ros.reward.synthetic import write_push_bag
from spatial_mllm_ros.reward.voc import value_order_correlation

torch.set_num_threads(1)
FIXTURE = Path(__file__).parent / "data" / "fixtures" / "lerobot_v3_tiny"
LENGTHS = [12, 20, 15]
NEW = ("next.reward", "progress")
CHANGED = {"data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet",
           "meta/info.json", "meta/stats.json"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny")


def _label(checkpoint, out, *inputs, extra=()):
    return cli_main(["label-rewards", *map(str, inputs), "--model", str(checkpoint), "--out", str(out),
                     "--max-frames", "4", "--no-progress", *extra])


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _data(root: Path):
    return pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")


def _episodes(root: Path):
    return pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")


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


def test_round_trip_on_the_lerobot_fixture_keeps_its_layout(checkpoint, tmp_path):
    out = tmp_path / "labelled"
    assert _label(checkpoint, out, FIXTURE, extra=["--stride", "2"]) == 0
    source_files, out_files = _files(FIXTURE), _files(out)
    journal = {name for name in out_files if name.startswith("meta/rewards/")}
    assert journal == {"meta/rewards/run.json"} | {f"meta/rewards/episode_{i:06d}.json" for i in range(3)}
    assert set(out_files) - journal == set(source_files)
    for name in set(source_files) - CHANGED:  # videos, tasks, README: byte-identical, shared
        assert out_files[name].read_bytes() == source_files[name].read_bytes(), name
        assert os.path.samefile(out_files[name], source_files[name]), name

    # data: every old column as it was, the two new float32 columns for all 47 frames
    before, after = _data(FIXTURE), _data(out)
    assert after.column_names == before.column_names + list(NEW)
    assert after.select(before.column_names).equals(before)
    assert after.num_rows == 47
    for name in NEW:
        assert str(after.schema.field(name).type) == "float"
        assert np.isfinite(after.column(name).to_numpy()).all()
    progress = after.column("progress").to_numpy()
    assert ((progress >= 0) & (progress <= 1)).all()
    hf = json.loads(after.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["next.reward"] == hf["progress"] == {"dtype": "float32", "_type": "Value"}

    # info.json: the source's, plus both features declared with provenance
    info_before = json.loads((FIXTURE / "meta" / "info.json").read_text())
    info = json.loads((out / "meta" / "info.json").read_text())
    assert {k: v for k, v in info.items() if k != "features"} == {
        k: v for k, v in info_before.items() if k != "features"}
    assert list(info["features"]) == [*info_before["features"], *NEW]
    for name in NEW:
        feature = info["features"][name]
        assert (feature["dtype"], feature["shape"], feature["names"]) == ("float32", [1], None)
        assert feature["info"]["model_id"].startswith(checkpoint.name + "@")
        assert feature["info"]["stride"] == 2
        assert feature["info"]["mode"] == "progress" and "spatial_mllm_ros" in feature["info"]["code_version"]

    # episodes table: old columns unchanged; new statistics equal numpy's over each episode
    episodes_before, episodes = _episodes(FIXTURE), _episodes(out)
    assert episodes.select(episodes_before.column_names).equals(episodes_before)
    new_columns = [f"stats/{name}/{stat}" for name in NEW for stat in
                   ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")]
    assert episodes.column_names == episodes_before.column_names[:-2] + new_columns + \
        episodes_before.column_names[-2:]
    frame = after.to_pandas()
    for row in episodes.to_pylist():
        rows = frame[frame["episode_index"] == row["episode_index"]]
        for name in NEW:
            expected = feature_stats(rows[name].to_numpy())
            assert {stat: row[f"stats/{name}/{stat}"] for stat in expected} == expected

    # meta/stats.json: old entries unchanged; new ones numpy's over the whole column
    stats_before = json.loads((FIXTURE / "meta" / "stats.json").read_text())
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert {k: stats[k] for k in stats_before} == stats_before
    for name in NEW:
        assert stats[name] == feature_stats(frame[name].to_numpy())
        assert stats[name]["count"] == [47]

    # which frames the model scored: every 2nd and the last, per episode
    for index, length in enumerate(LENGTHS):
        record = json.loads((out / "meta" / "rewards" / f"episode_{index:06d}.json").read_text())
        assert record["scored_frames"] == sorted(set(range(0, length, 2)) | {length - 1})
        assert set(record["valid_frames"]) <= set(record["scored_frames"]) and 0 in record["valid_frames"]
        assert record["instruction"] == "slide the white block to the right"

    # the output is itself a LeRobot dataset this reader (and so the labeller) accepts
    relabelled = LeRobotSource(out)
    assert [e["length"] for e in relabelled.episodes] == LENGTHS
    assert len(list(relabelled.episode_frames(1, None))) == 20


class BlockTracker:
    """Test double for the model only: answers how far the white block moved, in millimetres.

    It reads the block's left edge in the first frame it is shown and in the frame each prompt
    names (by its time since the first frame), and answers 10 mm per pixel of displacement.
    """

    model_id = "scripted-block-tracker"
    max_frames = 8

    def __init__(self):
        self.prompts: list[str] = []

    @staticmethod
    def _left_edge(rgb: np.ndarray) -> int:
        return int(np.flatnonzero((rgb.min(axis=2) > 180).any(axis=0))[0])

    def generate_text(self, frames, prompts):
        self.prompts.extend(prompts)
        origin = self._left_edge(frames[0].rgb)
        answers = []
        for prompt in prompts:
            offset = float(re.search(r"the frame at t = ([0-9.]+) s", prompt).group(1))
            (frame,) = [f for f in frames[1:] if abs(f.stamp - frames[0].stamp - offset) < 0.005]
            answers.append(f"`{10 * (self._left_edge(frame.rgb) - origin)}`")
        return answers


@pytest.mark.parametrize("stride", [1, 3])
def test_known_ground_truth_is_written_exactly(tmp_path, stride):
    tracker = BlockTracker()
    out, failures = label_dataset(RewardAnnotator(tracker), [str(FIXTURE)], tmp_path / "out",
                                  LabelOptions(mode="displacement", stride=stride))
    assert failures == {}
    frame = _data(out).to_pandas()
    truth = (frame["frame_index"] / frame.groupby("episode_index")["frame_index"].transform("max")).to_numpy()
    progress = frame["progress"].to_numpy()
    if stride == 1:
        np.testing.assert_array_equal(progress, truth.astype(np.float32))
    else:  # interpolated between the scored frames of a linear truth: equal to float32 rounding
        np.testing.assert_allclose(progress, truth, rtol=0, atol=1e-6)
    for index, length in enumerate(LENGTHS):
        rows = frame[frame["episode_index"] == index]
        expected_reward = np.append(np.full(length - 1, 1.0 / (length - 1)), 0.0)
        np.testing.assert_allclose(rows["next.reward"].to_numpy(), expected_reward, rtol=0, atol=1e-6)
        assert value_order_correlation(rows["progress"].to_numpy()) == pytest.approx(1.0)
        record = json.loads((out / "meta" / "rewards" / f"episode_{index:06d}.json").read_text())
        assert record["voc"] == pytest.approx(1.0) and record["episode_score"] == 1.0
        assert record["valid_frames"] == record["scored_frames"] == sorted(
            set(range(0, length, stride)) | {length - 1})
    if stride == 1:
        exact = frame["next.reward"].to_numpy()
        diffs = np.append(np.diff(truth), 0.0)
        ends = frame.groupby("episode_index")["frame_index"].transform("max")
        last = (frame["frame_index"] == ends).to_numpy()
        np.testing.assert_array_equal(exact[~last], diffs[~last].astype(np.float32))
        assert (exact[last] == 0).all()
    # each episode's own task string was the instruction
    assert all('"slide the white block to the right"' in p for p in tracker.prompts)


def test_a_killed_run_resumes_and_equals_an_uninterrupted_run(checkpoint, tmp_path):
    command = [sys.executable, "-m", "spatial_mllm_ros.cli", "label-rewards", str(FIXTURE), "--model",
               str(checkpoint), "--max-frames", "4", "--no-progress"]
    killed_out = tmp_path / "killed"
    journal = tmp_path / ".killed.partial" / "meta" / "rewards"
    process = subprocess.Popen([*command, "--out", str(killed_out)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (journal / "episode_000000.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = sorted(p.name for p in journal.glob("episode_*.json"))
    assert "episode_000000.json" in done and len(done) < 3 and not killed_out.exists()

    rerun = subprocess.run([*command, "--out", str(killed_out)], capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"3 episode(s), {len(done)} already labelled" in rerun.stderr
    whole_out = tmp_path / "whole"
    whole = subprocess.run([*command, "--out", str(whole_out)], capture_output=True, text=True, check=False)
    assert whole.returncode == 0, whole.stderr
    killed_files, whole_files = _files(killed_out), _files(whole_out)
    assert set(killed_files) == set(whole_files)
    for name in whole_files:
        assert killed_files[name].read_bytes() == whole_files[name].read_bytes(), name
    assert not (tmp_path / ".killed.partial").exists()


def test_rerunning_with_other_settings_is_refused(checkpoint, tmp_path, capsys):
    staging = tmp_path / ".out.partial" / "meta" / "rewards"
    staging.mkdir(parents=True)
    (staging / "run.json").write_text(json.dumps({"model_id": "another-model"}))
    with pytest.raises(SystemExit):
        _label(checkpoint, tmp_path / "out", FIXTURE)
    assert "holds a partial run with other settings" in capsys.readouterr().err


def test_in_place_only_with_the_flag(checkpoint, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    shutil.copytree(FIXTURE, dataset)
    with pytest.raises(SystemExit):
        _label(checkpoint, dataset, dataset)
    assert "already exists" in capsys.readouterr().err
    assert _files(dataset).keys() == _files(FIXTURE).keys()
    assert cli_main(["label-rewards", str(dataset), "--model", str(checkpoint), "--in-place", "--max-frames",
                     "4", "--no-progress", "--stride", "4"]) == 0
    assert _data(dataset).column_names[-2:] == list(NEW)
    assert (dataset / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4").read_bytes() == (
        FIXTURE / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_bags_become_a_lerobot_dataset(checkpoint, tmp_path):
    bags = tmp_path / "bags"
    write_push_bag(bags / "ep_0", 7, rate_hz=5.0)
    write_push_bag(bags / "ep_1", 9, rate_hz=5.0, start_stamp=2000.0)
    out = tmp_path / "out"
    assert _label(checkpoint, out, bags, extra=["--instruction", "push the red box", "--stride", "3"]) == 0
    dataset = LeRobotSource(out)
    info = dataset.info
    assert info["codebase_version"] == "v3.0" and info["fps"] == 5 and info["total_frames"] == 16
    assert info["total_episodes"] == 2 and info["splits"] == {"train": "0:2"}
    camera = "observation.images.color"
    assert dataset.video_keys == [camera]
    assert info["features"][camera]["info"] == {
        "video.height": 56, "video.width": 56, "video.codec": "av1", "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False, "video.fps": 5, "video.channels": 3, "has_audio": False}
    assert list(info["features"]) == [camera, "timestamp", "frame_index", "episode_index", "index",
                                      "task_index", *NEW]
    assert dataset.tasks == {0: "push the red box"}
    assert [e["length"] for e in dataset.episodes] == [7, 9]
    assert [e["dataset_from_index"] for e in dataset.episodes] == [0, 7]
    # the red box moves right in the decoded video as in the bag
    frames = list(dataset.episode_frames(1, camera))
    red = [np.flatnonzero((f.rgb[:, :, 0] > 150) & (f.rgb[:, :, 1] < 90)) for f in frames]
    assert len(frames) == 9 and np.all(np.diff([np.mean(r % 56) for r in red]) > 0)
    table = pq.read_table(out / "data" / "chunk-000" / "file-001.parquet").to_pandas()
    np.testing.assert_allclose(table["timestamp"], np.arange(9) / 5, atol=1e-6)
    assert list(table["index"]) == list(range(7, 16)) and set(table["episode_index"]) == {1}
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert stats["index"]["max"] == [15.0] and stats["progress"]["count"] == [16]
    assert np.shape(stats[camera]["mean"]) == (3, 1, 1)
    record = json.loads((out / "meta" / "rewards" / "bags" / "ep_1.json").read_text())
    assert record["scored_frames"] == [0, 3, 6, 8] and len(record["stamps"]) == 9
    assert record["stamps"][0] == pytest.approx(2000.0)


def test_bad_arguments_exit_with_a_reason(checkpoint, tmp_path, capsys):
    write_push_bag(tmp_path / "bag", 2)
    cases = [
        ([tmp_path / "bag"], [], "bags carry no task string"),
        ([tmp_path / "bag"], ["--instruction", "x", "--target", "0.2"], "--target needs --mode displacement"),
        ([tmp_path / "nope"], ["--instruction", "x"], "no such bag"),
        ([FIXTURE, tmp_path / "bag"], [], "label one LeRobot dataset per run"),
        ([FIXTURE], ["--camera", "observation.images.wrist"], "no camera feature"),
    ]
    for inputs, extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            _label(checkpoint, tmp_path / "out", *inputs, extra=extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_model_failure_keeps_nothing_so_a_rerun_retries(checkpoint, tmp_path):
    from spatial_mllm_ros.reward.episodes import load_annotator

    broken = load_annotator(str(checkpoint), max_frames=4)
    broken.qa.close()  # every generate_text now raises "no model loaded"
    out, failures = label_dataset(broken, [str(FIXTURE)], tmp_path / "out", LabelOptions(stride=8))
    assert sorted(failures) == [f"episode_{i:06d}" for i in range(3)]
    assert all("every model call failed" in error for error in failures.values())
    assert not out.exists() and not list((tmp_path / ".out.partial" / "meta" / "rewards").glob("episode_*"))
    working = load_annotator(str(checkpoint), max_frames=4)
    assert label_dataset(working, [str(FIXTURE)], tmp_path / "out", LabelOptions(stride=8))[1] == {}
    working.qa.close()
    assert _data(out).num_rows == 47


def test_the_actions_recording_mode_scores_a_lerobot_episode_or_a_bag(tmp_path):
    """What the ROS action's recording mode calls (ROS-free): an episode by index, or a bag."""
    from spatial_mllm_ros.reward.episodes import score_recording

    annotator = RewardAnnotator(BlockTracker())
    options = LabelOptions(mode="displacement", image_topic="observation.images.top")
    outcome = score_recording(annotator, FIXTURE, "episode_000002", options)
    assert outcome.error == "" and list(outcome.scores.frame_indices) == list(range(15))
    np.testing.assert_allclose(outcome.scores.progress, np.arange(15) / 14)
    assert "is not a LeRobot" not in score_recording(annotator, FIXTURE, "2", options).error
    assert score_recording(annotator, FIXTURE, "lerobot_v3_tiny", options).error.endswith(
        "name the LeRobot episode by its index (0..2), got 'lerobot_v3_tiny'")
    write_push_bag(tmp_path / "bag", 3)
    bag = score_recording(annotator, tmp_path / "bag", "bag", LabelOptions(instruction="push"))
    assert bag.scores is None and "every model call failed" in bag.error  # no white block in a push bag
    missing = score_recording(annotator, tmp_path / "nothing", "x", LabelOptions(instruction="push"))
    assert missing.scores is None and "cannot read" in missing.error


def test_a_hub_dataset_id_is_labelled_from_the_local_cache(tmp_path, monkeypatch):
    """``owner/name`` resolves through huggingface_hub's cache (HF_HUB_OFFLINE); the cache stays as it was."""
    import huggingface_hub.constants as constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--lerobot-test--tiny"
    shutil.copytree(FIXTURE, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    before = {name: path.read_bytes() for name, path in _files(repo).items()}
    out, failures = label_dataset(RewardAnnotator(BlockTracker()), ["lerobot-test/tiny"], tmp_path / "out",
                                  LabelOptions(mode="displacement", stride=4))
    assert failures == {} and _data(out).num_rows == 47
    assert json.loads((out / "meta" / "rewards" / "episode_000000.json").read_text())["source"] == str(
        repo / "snapshots" / revision)
    annotator = RewardAnnotator(BlockTracker())
    with pytest.raises(ValueError, match="would change files of the Hugging Face cache"):
        label_dataset(annotator, ["lerobot-test/tiny"], None, LabelOptions(), in_place=True)
    with pytest.raises(ValueError, match="cannot resolve Hub dataset 'lerobot-test/missing'"):
        label_dataset(annotator, ["lerobot-test/missing"], tmp_path / "o2", LabelOptions())
    assert {name: path.read_bytes() for name, path in _files(repo).items()} == before
