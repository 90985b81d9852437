# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reading LeRobot v3.0 datasets, on ``lerobot_v3_tiny`` (written by LeRobot's own dataset code).

The fixture's picture is known (a white block 4 pixels further right each frame, a red ramp with
the frame index), so decoded frames can be checked for belonging to the right episode.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spatial_mllm_ros.reward.lerobot import (
    LeRobotSource,
    feature_stats,
    is_lerobot_root,
    resolve_hub_dataset,
)
from spatial_mllm_ros.reward.video import VideoWriter, decode_episode, video_stream_info

FIXTURE = Path(__file__).parent / "data" / "fixtures" / "lerobot_v3_tiny"
VIDEO = FIXTURE / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4"
LENGTHS = [12, 20, 15]


def block_left_edge(rgb: np.ndarray) -> int:
    """Leftmost column of the white block (the fixture draws it at 5 + 4 * frame_index)."""
    return int(np.flatnonzero((rgb.min(axis=2) > 180).any(axis=0))[0])


def test_reads_the_episodes_table_tasks_and_cameras():
    source = LeRobotSource(FIXTURE)
    assert is_lerobot_root(FIXTURE) and source.fps == 10
    assert [e["length"] for e in source.episodes] == LENGTHS
    assert [e["dataset_from_index"] for e in source.episodes] == [0, 12, 32]
    assert source.tasks == {0: "slide the white block to the right"}
    assert source.episode_task(2) == "slide the white block to the right"
    assert source.video_keys == ["observation.images.top"] and source.image_keys == []
    assert source.camera(None) == "observation.images.top"
    with pytest.raises(ValueError, match=r"no camera feature 'observation\.images\.wrist'"):
        source.camera("observation.images.wrist")
    assert source.data_files() == [FIXTURE.absolute() / "data" / "chunk-000" / "file-000.parquet"]


@pytest.mark.parametrize("episode", [0, 1, 2])
def test_an_episode_decodes_exactly_its_own_frames(episode):
    frames = list(LeRobotSource(FIXTURE).episode_frames(episode, "observation.images.top"))
    assert len(frames) == LENGTHS[episode]
    np.testing.assert_allclose([f.stamp for f in frames], np.arange(LENGTHS[episode]) / 10)
    assert [block_left_edge(f.rgb) for f in frames] == [5 + 4 * k for k in range(LENGTHS[episode])]
    assert frames[0].rgb.shape == (72, 96, 3)


def test_decoding_streams_one_frame_at_a_time(tmp_path):
    """Decoding a 300-frame episode holds about one frame, not the episode (numpy allocations traced)."""
    import tracemalloc

    size, count = 128, 300
    with VideoWriter(tmp_path / "long.mp4", 30) as writer:
        for k in range(count):
            frame = np.zeros((size, size, 3), np.uint8)
            frame[:, : (k % size) + 1] = 200
            writer.add(frame)
    tracemalloc.start()
    decoded = sum(1 for _ in decode_episode(tmp_path / "long.mp4", 1.0, 9.0, 30))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert decoded == 240
    assert peak < 8 * size * size * 3  # the whole range would be 240 frames of 49 kB


def test_video_info_matches_what_lerobot_declared():
    declared = json.loads((FIXTURE / "meta" / "info.json").read_text())["features"]["observation.images.top"]
    assert video_stream_info(VIDEO) == declared["info"]


def test_written_video_has_lerobot_stream_properties(tmp_path):
    frames = [f.rgb for f in LeRobotSource(FIXTURE).episode_frames(0, "observation.images.top")]
    with VideoWriter(tmp_path / "v.mp4", 10) as writer:
        for rgb in frames:
            writer.add(rgb)
    declared = json.loads((FIXTURE / "meta" / "info.json").read_text())["features"]["observation.images.top"]
    assert video_stream_info(tmp_path / "v.mp4") == declared["info"]
    decoded = [rgb for _, rgb in decode_episode(tmp_path / "v.mp4", 0.0, 1.2, 10)]
    assert [block_left_edge(rgb) for rgb in decoded] == [block_left_edge(rgb) for rgb in frames]
    odd = VideoWriter(tmp_path / "odd.mp4", 10)
    with pytest.raises(ValueError, match="even width and height"), odd:
        odd.add(np.zeros((5, 8, 3), np.uint8))
    assert not list(tmp_path.glob(".odd.mp4*")) and not (tmp_path / "odd.mp4").exists()


def test_statistics_equal_lerobots_own_for_min_max_mean_std_count():
    """LeRobot's quantiles are histogram estimates; the exact statistics must agree."""
    table = pq.read_table(FIXTURE / "data" / "chunk-000" / "file-000.parquet").to_pandas()
    episodes = pq.read_table(FIXTURE / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    for episode in episodes:
        rows = table[table["episode_index"] == episode["episode_index"]]
        for feature in ("observation.state", "action", "timestamp", "frame_index", "index"):
            ours = feature_stats(np.stack(rows[feature].to_numpy()))
            for stat in ("min", "max", "mean", "std"):
                theirs = episode[f"stats/{feature}/{stat}"]
                np.testing.assert_allclose(ours[stat], theirs, rtol=1e-6, atol=1e-7)
            assert ours["count"] == episode[f"stats/{feature}/count"]
    values = np.arange(11.0)
    assert feature_stats(values)["q10"] == [1.0] and feature_stats(values)["q50"] == [5.0]


def test_image_features_stored_in_parquet_are_read(tmp_path):
    """A dataset whose camera is an ``image`` feature: PNG bytes in the data file, as LeRobot stores them."""
    from PIL import Image

    root = tmp_path / "images"
    shutil.copytree(FIXTURE, root)
    source = LeRobotSource(FIXTURE)
    images = [f.rgb for e in range(3) for f in source.episode_frames(e, "observation.images.top")]
    cells = []
    for rgb in images:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    data = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    table = table.append_column("observation.images.front", pa.array(cells))
    pq.write_table(table, data)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.images.front"] = {"dtype": "image", "shape": [72, 96, 3],
                                                    "names": ["height", "width", "channels"]}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    dataset = LeRobotSource(root)
    frames = list(dataset.episode_frames(1, "observation.images.front"))
    assert [block_left_edge(f.rgb) for f in frames] == [5 + 4 * k for k in range(20)]
    np.testing.assert_array_equal(frames[3].rgb, images[12 + 3])


def test_bad_datasets_are_rejected_with_the_reason(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    info = json.loads((old / "meta" / "info.json").read_text())
    (old / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    assert not is_lerobot_root(old)
    with pytest.raises(ValueError, match=r"codebase_version 'v2\.1' is not supported"):
        LeRobotSource(old)
    with pytest.raises(ValueError, match=r"no meta/info\.json"):
        LeRobotSource(tmp_path)
    short = tmp_path / "short"
    shutil.copytree(FIXTURE, short)
    episodes_file = short / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(episodes_file)
    lengths = table.column("length").to_pylist()
    lengths[2] = 16  # one more frame than the video holds for it
    pq.write_table(table.set_column(table.column_names.index("length"), "length", pa.array(lengths)),
                   episodes_file)
    with pytest.raises(ValueError, match="episode 2 has 16 frames but 15"):
        list(LeRobotSource(short).episode_frames(2, None))


def test_hub_ids_resolve_from_the_local_cache_offline(tmp_path, monkeypatch):
    """A Hub dataset id resolves through huggingface_hub's cache layout; nothing is downloaded."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--lerobot-test--tiny"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(FIXTURE, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    resolved = resolve_hub_dataset("lerobot-test/tiny")
    assert resolved == repo / "snapshots" / revision
    assert [e["length"] for e in LeRobotSource(resolved).episodes] == LENGTHS
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        resolve_hub_dataset("lerobot-test/not-cached")
