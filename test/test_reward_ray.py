# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward labelling on Ray Data: a local 2-CPU cluster, one model per worker, same labels as one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.label import LabelOptions, find_bags, label_bags, load_annotator, pending_bags
from spatial_mllm_ros.reward.lerobot import read_frame_signals
from spatial_mllm_ros.reward.synthetic import write_push_bag

ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray==2.60.0)")
torch.set_num_threads(1)


def _by_episode(path):
    table, document = read_frame_signals(path)
    frame = table.to_pandas()
    ids = {e["episode_index"]: e["episode_id"] for e in document["episodes"]}
    return {ids[index]: rows[["frame_index", "progress", "reward"]].to_numpy()
            for index, rows in frame.groupby("episode_index")}


def test_ray_label_rewards_matches_single_process(tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny", preset="tiny")
    for i in range(3):
        write_push_bag(tmp_path / "bags" / f"ep_{i}", 3 + i, start_stamp=1000.0 + 100 * i)
    ray_out = tmp_path / "ray.parquet"
    code = cli_main(["label-rewards", str(tmp_path / "bags"), "--instruction", "push the red box",
                     "--model", str(checkpoint), "--out", str(ray_out), "--max-frames", "4",
                     "--ray-workers", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert not ray.is_initialized()  # the local cluster it started is shut down again

    single_out = tmp_path / "single.parquet"
    work = pending_bags(find_bags([tmp_path / "bags"]), single_out)
    annotator = load_annotator(str(checkpoint), max_frames=4)
    assert label_bags(annotator, work, single_out, LabelOptions(instruction="push the red box"),
                      show_progress=False) == {}
    annotator.qa.close()

    ray_episodes, single_episodes = _by_episode(ray_out), _by_episode(single_out)
    assert sorted(ray_episodes) == ["ep_0", "ep_1", "ep_2"] == sorted(single_episodes)
    for name, rows in single_episodes.items():
        np.testing.assert_array_equal(ray_episodes[name], rows)
    assert read_frame_signals(ray_out)[1]["provenance"]["model_id"] == annotator.model_id
