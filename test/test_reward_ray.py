# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward labelling on Ray Data: a local 2-CPU cluster, episodes as units, one model per worker.

The labelled dataset must be the one a single process writes, file for file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spatial_mllm_ros.cli import main as cli_main
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.synthetic import write_push_bag

ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray==2.60.0)")
torch.set_num_threads(1)
FIXTURE = Path(__file__).parent / "data" / "fixtures" / "lerobot_v3_tiny"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ray_labels_the_same_datasets_as_one_process(tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny", preset="tiny")
    for i in range(2):
        write_push_bag(tmp_path / "bags" / f"ep_{i}", 3 + i, start_stamp=1000.0 + 100 * i)
    for name, source, extra in (("lerobot", FIXTURE, ["--stride", "3"]),
                                ("bags", tmp_path / "bags", ["--instruction", "push the red box"])):
        common = ["label-rewards", str(source), "--model", str(checkpoint), "--max-frames", "4",
                  "--no-progress", *extra]
        assert cli_main([*common, "--out", str(tmp_path / f"{name}_ray"), "--ray-workers", "2"]) == 0, \
            capsys.readouterr().err
        assert not ray.is_initialized()  # the local cluster it started is shut down again
        assert cli_main([*common, "--out", str(tmp_path / f"{name}_single")]) == 0
        ray_files, single_files = _files(tmp_path / f"{name}_ray"), _files(tmp_path / f"{name}_single")
        assert sorted(ray_files) == sorted(single_files)
        differing = [f for f in single_files if ray_files[f] != single_files[f]]
        # bag videos are encoded by different processes: AV1 bytes may differ, labels must not
        assert all(f.endswith(".mp4") for f in differing) and (name == "bags" or not differing), differing
