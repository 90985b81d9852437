# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reading LeRobot v3.0 datasets, the format LeRobot's trainers and the Hub's robotics data use.

The layout (as LeRobot's own dataset code writes it; ``test/data/fixtures/lerobot_v3_tiny``):

* ``meta/info.json``: ``codebase_version`` "v3.x", ``fps``, ``features`` (dtype, shape, names;
  video features carry an ``info`` block), the ``data_path``/``video_path`` templates, totals.
* ``data/chunk-XXX/file-YYY.parquet``: one row per frame, several episodes per file
  (``timestamp``, ``frame_index``, ``episode_index``, ``index``, ``task_index`` and the features).
* ``videos/<key>/chunk-XXX/file-YYY.mp4``: one camera, episodes concatenated; the episodes table
  gives each episode's file and ``from_timestamp``/``to_timestamp`` in it.
* ``meta/episodes/chunk-XXX/file-YYY.parquet``: one row per episode (``length``, ``tasks``, file
  indices, ``dataset_from_index``/``dataset_to_index``, statistics ``stats/<feature>/<stat>``).
* ``meta/stats.json`` (statistics over the dataset) and ``meta/tasks.parquet`` (task strings,
  written by pandas with the string as the index and a ``task_index`` column).

Statistics here are numpy's over a feature's values: min, max, mean, population std, count and
the quantiles q01/q10/q50/q90/q99 (``np.quantile``, linear), per component of the feature.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.frames import Frame

CODEBASE_VERSION = "v3.0"
REWARD_FEATURE = "next.reward"
PROGRESS_FEATURE = "progress"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILES)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000
# LeRobot's own columns, present in every dataset.
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def read_info(root: str | Path) -> dict:
    """``meta/info.json`` of a v3 dataset (ValueError naming what is wrong otherwise)."""
    path = Path(root) / "meta" / "info.json"
    if not path.is_file():
        raise ValueError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    info = json.loads(path.read_text())
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise ValueError(f"{root}: LeRobot codebase_version {version!r} is not supported (v3.x only; "
                         "convert older datasets with LeRobot's v2.1 -> v3.0 script)")
    return info


def is_lerobot_root(path: str | Path) -> bool:
    """A directory whose ``meta/info.json`` declares ``codebase_version`` v3.x."""
    try:
        read_info(path)
    except (ValueError, OSError, json.JSONDecodeError):
        return False
    return True


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with no such local path: what ``huggingface_hub`` calls a repo id."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not Path(text).exists() and not text.startswith(".")


def resolve_hub_dataset(repo_id: str) -> Path:
    """The local snapshot of a Hub dataset, resolved by ``huggingface_hub``.

    ``HF_HUB_OFFLINE=1`` makes it use the local cache only (nothing is downloaded then).

    Raises:
        ValueError: huggingface_hub cannot resolve it (not cached while offline, unknown id, ...).
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset"))
    except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP errors
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: only the local cache is searched)" if offline else ""
        raise ValueError(f"no such local path, and cannot resolve Hub dataset {repo_id!r}{hint}: "
                         f"{type(exc).__name__}: {exc}") from exc


def feature_stats(values: np.ndarray) -> dict[str, list]:
    """The numpy statistics of ``values`` ([N, ...]) over its first axis, as LeRobot stores them."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    stats = {"min": data.min(axis=0), "max": data.max(axis=0), "mean": data.mean(axis=0),
             "std": data.std(axis=0)}
    stats.update({name: np.quantile(data, q, axis=0) for name, q in QUANTILES.items()})
    result = {name: value.tolist() for name, value in stats.items()}
    result["count"] = [int(data.shape[0])]
    return {name: result[name] for name in STAT_NAMES}


def image_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel statistics of uint8 frames [N, H, W, 3] scaled to [0, 1], LeRobot's [3, 1, 1] shape.

    ``count`` is the number of frames, as in LeRobot's image statistics.
    """
    pixels = np.asarray(frames, dtype=np.float64).reshape(-1, 3) / 255.0
    per_channel = feature_stats(pixels)
    result = {name: [[[v]] for v in value] for name, value in per_channel.items() if name != "count"}
    result["count"] = [len(frames)]
    return {name: result[name] for name in STAT_NAMES}


class LeRobotSource:
    """A LeRobot v3.x dataset on disk, read lazily (episodes table, tasks, frames by episode)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self.info = read_info(self.root)
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        self.episodes = self._read_episodes()
        self.tasks = self._read_tasks()

    @property
    def video_keys(self) -> list[str]:
        """Camera features stored as MP4 video."""
        return [key for key, spec in self.features.items() if spec.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        """Camera features stored as encoded images inside the data Parquet files."""
        return [key for key, spec in self.features.items() if spec.get("dtype") == "image"]

    def camera(self, key: str | None) -> str:
        """The camera feature to label: ``key``, else the only or first video (then image) feature."""
        cameras = self.video_keys + self.image_keys
        if not cameras:
            raise ValueError(f"{self.root}: the dataset has no video or image feature to label")
        if key is None:
            return cameras[0]
        if key not in cameras:
            raise ValueError(f"{self.root}: no camera feature {key!r}; cameras: {', '.join(cameras)}")
        return key

    def _read_episodes(self) -> list[dict]:
        import pyarrow.parquet as pq

        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise ValueError(f"{self.root}: no episodes table (meta/episodes/chunk-*/file-*.parquet)")
        rows = []
        for path in files:
            names = [n for n in pq.read_schema(path).names if not n.startswith("stats/")]
            rows.extend(pq.read_table(path, columns=names).to_pylist())
        rows.sort(key=lambda row: row["episode_index"])
        indices = [row["episode_index"] for row in rows]
        if indices != list(range(len(rows))):
            raise ValueError(f"{self.root}: episode indices are not 0..{len(rows) - 1}")
        return rows

    def _read_tasks(self) -> dict[int, str]:
        import pandas as pd

        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            raise ValueError(f"{self.root}: no meta/tasks.parquet")
        table = pd.read_parquet(path)
        return {int(index): str(task) for task, index in zip(table.index, table["task_index"], strict=True)}

    def data_file(self, chunk_index: int, file_index: int) -> Path:
        """Absolute path of one data Parquet file."""
        template = self.info.get("data_path", DATA_PATH)
        return self.root / template.format(chunk_index=int(chunk_index), file_index=int(file_index))

    def video_file(self, key: str, chunk_index: int, file_index: int) -> Path:
        """Absolute path of one camera's MP4 file."""
        template = self.info.get("video_path") or VIDEO_PATH
        return self.root / template.format(video_key=key, chunk_index=int(chunk_index),
                                           file_index=int(file_index))

    def data_files(self) -> list[Path]:
        """Every data Parquet file the episodes table refers to, in order."""
        paths = (self.data_file(e["data/chunk_index"], e["data/file_index"]) for e in self.episodes)
        return list(dict.fromkeys(paths))

    def episode_task(self, episode_index: int) -> str:
        """The episode's task string (its first, when it lists several)."""
        tasks = self.episodes[episode_index].get("tasks") or []
        if not tasks:
            raise ValueError(f"{self.root}: episode {episode_index} has no task")
        return str(tasks[0])

    def episode_frames(self, episode_index: int, camera: str) -> Iterator[Frame]:
        """The episode's frames of one camera, in order, decoded one at a time.

        ``stamp`` is the time since the episode's first frame (``frame_index / fps``).

        Raises:
            ValueError: the camera is unknown or its frames do not match the episode's length.
        """
        episode = self.episodes[episode_index]
        length = int(episode["length"])
        camera = self.camera(camera)
        if camera in self.video_keys:
            from spatial_mllm_ros.reward.video import decode_episode

            prefix = f"videos/{camera}/"
            path = self.video_file(camera, episode[prefix + "chunk_index"], episode[prefix + "file_index"])
            frames = decode_episode(path, float(episode[prefix + "from_timestamp"]),
                                    float(episode[prefix + "to_timestamp"]), self.fps)
            count = 0
            for count, (_, rgb) in enumerate(frames, start=1):
                if count > length:
                    break
                yield Frame(stamp=(count - 1) / self.fps, camera_id=camera, rgb=rgb)
        else:
            count = yield from self._parquet_images(episode, camera)
        if count != length:
            raise ValueError(f"{self.root}: episode {episode_index} has {length} frames but "
                             f"{count} {camera} frames in its range")

    def _parquet_images(self, episode: dict, camera: str):
        """Frames of an image feature stored in the data file (``{bytes, path}`` structs)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from PIL import Image

        path = self.data_file(episode["data/chunk_index"], episode["data/file_index"])
        table = pq.read_table(path, columns=["episode_index", "frame_index", camera],
                              filters=[("episode_index", "=", int(episode["episode_index"]))])
        table = table.take(pc.sort_indices(table, [("frame_index", "ascending")]))
        count = 0
        for count, cell in enumerate(table.column(camera).to_pylist(), start=1):
            data = cell.get("bytes") if isinstance(cell, dict) else None
            if not data:
                raise ValueError(f"{path}: {camera} frame {count - 1} holds no encoded image bytes")
            with Image.open(io.BytesIO(data)) as image:
                rgb = np.asarray(image.convert("RGB"))
            yield Frame(stamp=(count - 1) / self.fps, camera_id=camera, rgb=rgb)
        return count
