# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""lerobot.frame_signals Parquet: schema, metadata, appending episodes, atomic rewrite."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spatial_mllm_ros import __version__
from spatial_mllm_ros.core.atomic import write_json_atomic
from spatial_mllm_ros.reward.lerobot import (
    METADATA_KEY,
    REWARD_SIGNALS,
    EpisodeSignals,
    Provenance,
    append_episodes,
    episode_ids,
    read_frame_signals,
)


def _episode(name, frames, progress):
    progress = np.asarray(progress, dtype=np.float64)
    reward = np.concatenate([[0.0], np.diff(progress)])
    return EpisodeSignals(episode_id=name, frame_index=np.asarray(frames),
                          signals={"progress": progress, "reward": reward},
                          info={"source": f"/bags/{name}", "episode_score": float(progress[-1]),
                                "voc": float("nan")})


def _provenance():
    return Provenance(model_id="tiny-random", method="progress", instruction="push the box")


def test_schema_and_metadata_read_back_with_pyarrow_and_pandas(tmp_path):
    out = tmp_path / "rewards.parquet"
    assert append_episodes(out, [_episode("ep_a", [0, 2, 4], [0.0, np.nan, 0.5])],
                           REWARD_SIGNALS, _provenance()) == [0]

    schema = pq.read_schema(out)
    assert [(f.name, f.type) for f in schema] == [
        ("index", pa.int64()), ("episode_index", pa.int64()), ("frame_index", pa.int64()),
        ("progress", pa.float32()), ("reward", pa.float32())]
    document = json.loads(schema.metadata[METADATA_KEY])
    assert document["schema_version"] == 1
    assert document["signals"]["progress"] == {
        "description": REWARD_SIGNALS["progress"].description, "direction": "higher",
        "bounds": [0.0, 1.0], "unit": "fraction", "dtype": "float32"}
    assert document["signals"]["reward"]["bounds"] == [-1.0, 1.0]
    provenance = document["provenance"]
    assert provenance["model_id"] == "tiny-random" and provenance["method"] == "progress"
    assert provenance["instruction"] == "push the box"
    assert provenance["package_version"] == __version__ and provenance["created"].endswith("Z")
    assert document["episodes"] == [{"episode_index": 0, "episode_id": "ep_a", "num_frames": 3,
                                     "source": "/bags/ep_a", "episode_score": 0.5, "voc": None}]

    frame = pd.read_parquet(out)
    assert list(frame["index"]) == [0, 1, 2] and list(frame["frame_index"]) == [0, 2, 4]
    assert frame["progress"].dtype == np.float32
    assert math.isnan(frame["progress"][1]) and frame["progress"][2] == pytest.approx(0.5)


def test_appending_keeps_rows_and_continues_indices(tmp_path):
    out = tmp_path / "rewards.parquet"
    append_episodes(out, [_episode("ep_a", [0, 1], [0.0, 1.0])], REWARD_SIGNALS, _provenance())
    created = read_frame_signals(out)[1]["provenance"]["created"]
    assert append_episodes(out, [_episode("ep_b", [0, 1, 2], [0.0, 0.2, 0.4]),
                                 _episode("ep_c", [0], [0.0])], REWARD_SIGNALS, _provenance()) == [1, 2]
    table, document = read_frame_signals(out)
    assert table.column("index").to_pylist() == list(range(6))
    assert table.column("episode_index").to_pylist() == [0, 0, 1, 1, 1, 2]
    assert np.allclose(table.column("reward").to_numpy(), [0, 1, 0, 0.2, 0.2, 0], atol=1e-6)
    assert document["provenance"]["created"] == created
    assert episode_ids(out) == {"ep_a": 0, "ep_b": 1, "ep_c": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["rewards.parquet"]  # no temporary left over


def test_refuses_duplicates_and_mixed_provenance(tmp_path):
    out = tmp_path / "rewards.parquet"
    append_episodes(out, [_episode("ep_a", [0], [0.0])], REWARD_SIGNALS, _provenance())
    with pytest.raises(ValueError, match="already in"):
        append_episodes(out, [_episode("ep_a", [0], [0.0])], REWARD_SIGNALS, _provenance())
    other = Provenance(model_id="other-model", method="progress", instruction="push the box")
    with pytest.raises(ValueError, match="model_id='tiny-random'"):
        append_episodes(out, [_episode("ep_b", [0], [0.0])], REWARD_SIGNALS, other)
    assert episode_ids(out) == {"ep_a": 0}


def test_signal_length_mismatch_is_a_clear_error(tmp_path):
    bad = EpisodeSignals("ep", np.arange(3), {"progress": np.zeros(2), "reward": np.zeros(3)})
    with pytest.raises(ValueError, match="'progress' has 2 values for 3 frames"):
        append_episodes(tmp_path / "r.parquet", [bad], REWARD_SIGNALS, _provenance())
    assert not (tmp_path / "r.parquet").exists()


def test_json_summary_is_strict_json(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"voc": float("nan"), "scores": [np.float32(0.5)]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"voc": None, "scores": [0.5]}
