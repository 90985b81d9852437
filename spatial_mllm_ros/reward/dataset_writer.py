# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Writing the labelled LeRobot v3.0 dataset: atomically, resumably, one episode at a time.

The output is built in a staging folder next to it (``.<name>.partial``) and renamed into place
only when every episode is labelled, so ``OUT`` is either absent or a complete dataset. Each
labelled episode is written at once to ``meta/rewards/<episode>.json`` in the staging folder
(atomic write): a killed run loses at most the episode in progress, and a rerun with the same
settings labels only the episodes missing there (other settings are refused, so one column never
mixes two models or instructions).

From a LeRobot source, every file is first shared into the staging folder by hard link (a copy
across file systems); files that change are replaced there, never written through the link. At
the end the data Parquet files gain the ``next.reward`` and ``progress`` columns (float32, one per
frame), ``meta/info.json`` declares both features (with provenance and the scoring rule in their
``info``), and their statistics join the episodes table and ``meta/stats.json``. Videos, tasks
and every other file stay byte-identical. From rosbag2 recordings, the dataset is made from
scratch in the same layout: one episode per bag, its camera stream an AV1 video feature.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatial_mllm_ros import __version__
from spatial_mllm_ros.core.atomic import write_json_atomic, write_text_atomic
from spatial_mllm_ros.reward.episodes import BAG, LEROBOT, EpisodeLabels, EpisodeUnit
from spatial_mllm_ros.reward.lerobot import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    PROGRESS_FEATURE,
    REWARD_FEATURE,
    STAT_NAMES,
    VIDEO_PATH,
    LeRobotSource,
    feature_stats,
)

JOURNAL = Path("meta") / "rewards"
RUN_FILE = "run.json"
# Where LeRobot's Parquet files keep their Hugging Face ``datasets`` feature types.
HF_METADATA_KEY = b"huggingface"
SCORING_RULE = ("frames 0, stride, 2*stride, ... and each episode's last frame are scored by the model; "
                "progress between scored frames with a valid answer is linearly interpolated and "
                "held after the last one; next.reward[t] = progress[t+1] - progress[t], 0 at the last "
                "frame; the scored and valid frames of each episode are listed in meta/rewards/")


def _json_dump(path: Path, payload: dict) -> None:
    """JSON as LeRobot writes its metadata (indent 4, non-ASCII kept), atomically."""
    write_text_atomic(path, json.dumps(payload, indent=4, ensure_ascii=False))


def _share(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy when the file systems differ)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def _write_parquet(table, path: Path) -> None:
    """Parquet through a temporary file and a rename (never through a hard link)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def _signal_feature(description: str, provenance: dict) -> dict:
    return {"dtype": "float32", "shape": [1], "names": None,
            "info": {"description": description, **provenance, "scoring": SCORING_RULE}}


def _with_signal_columns(table, progress: np.ndarray, reward: np.ndarray):
    """``table`` plus (or with replaced) float32 ``next.reward`` and ``progress`` columns."""
    import pyarrow as pa

    for name in (REWARD_FEATURE, PROGRESS_FEATURE):
        if name in table.column_names:
            table = table.drop_columns([name])
    metadata = dict(table.schema.metadata or {})
    table = table.append_column(pa.field(REWARD_FEATURE, pa.float32()), pa.array(reward, pa.float32()))
    table = table.append_column(pa.field(PROGRESS_FEATURE, pa.float32()), pa.array(progress, pa.float32()))
    if HF_METADATA_KEY in metadata:
        document = json.loads(metadata[HF_METADATA_KEY])
        features = document.setdefault("info", {}).setdefault("features", {})
        for name in (REWARD_FEATURE, PROGRESS_FEATURE):
            features[name] = {"dtype": "float32", "_type": "Value"}
        metadata[HF_METADATA_KEY] = json.dumps(document).encode()
    return table.replace_schema_metadata(metadata)


def _stats_columns(features: dict[str, dict], episodes: Sequence[dict]) -> dict[str, list]:
    """``stats/<feature>/<stat>`` columns (one value per episode) from per-episode stats dicts."""
    columns: dict[str, list] = {}
    for feature in features:
        for stat in STAT_NAMES:
            columns[f"stats/{feature}/{stat}"] = [episode[feature][stat] for episode in episodes]
    return columns


class DatasetWriter:
    """The output of one ``label-rewards`` run (see the module docstring).

    Args:
        out: the dataset folder to create (or, with ``in_place``, the source dataset itself).
        kind: ``"lerobot"`` or ``"bag"``.
        run: the settings every episode must share (model id, mode, instruction, stride, ...).
        source: the LeRobot source (kind ``"lerobot"``).
        in_place: replace the source dataset by the labelled one when done.
    """

    def __init__(self, out: Path, kind: str, run: dict, source: LeRobotSource | None = None,
                 in_place: bool = False):
        if kind not in (LEROBOT, BAG):
            raise ValueError(f"kind must be {LEROBOT!r} or {BAG!r}, got {kind!r}")
        if kind == LEROBOT and source is None:
            raise ValueError("a LeRobot output needs its source dataset")
        self.out = Path(out).absolute()
        self.kind = kind
        self.run = {**run, "code_version": f"spatial_mllm_ros {__version__}"}
        self.source = source
        self.in_place = in_place
        if in_place and (source is None or self.out != source.root.absolute()):
            raise ValueError("--in-place writes into the LeRobot source dataset itself")
        if not in_place and self.out.exists():
            raise ValueError(f"{self.out} already exists: choose a new --out (or --in-place for the source)")
        self.staging = self.out.parent / f".{self.out.name}.partial"

    @property
    def journal(self) -> Path:
        """Folder of the labelled episodes' records."""
        return self.staging / JOURNAL

    def prepare(self) -> None:
        """Create the staging folder (sharing the source's files), or check an existing one's settings."""
        run_file = self.journal / RUN_FILE
        if run_file.is_file():
            earlier = json.loads(run_file.read_text())
            differing = sorted(k for k in set(earlier) | set(self.run) if earlier.get(k) != self.run.get(k))
            if differing:
                raise ValueError(
                    f"{self.staging} holds a partial run with other settings ({', '.join(differing)}); "
                    "rerun with the same settings, or delete it to start over")
            return
        if self.staging.exists():
            shutil.rmtree(self.staging)  # no settings file: nothing was labelled yet
        if self.kind == LEROBOT:
            for path in sorted(self.source.root.rglob("*")):
                relative = path.relative_to(self.source.root)
                hidden = relative.parts[0].startswith(".") or relative.parts[:2] == JOURNAL.parts
                if path.is_file() and not hidden:
                    _share(path, self.staging / relative)
        self.journal.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_file, self.run)

    def record_path(self, unit: EpisodeUnit) -> Path:
        """Where one episode's labels are kept."""
        if self.kind == LEROBOT:
            return self.journal / f"episode_{unit.episode_index:06d}.json"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in unit.episode_id)
        return self.journal / "bags" / f"{safe}.json"

    def staged_video(self, unit: EpisodeUnit) -> Path:
        """Where a bag episode's video is encoded before the dataset is assembled."""
        return self.record_path(unit).with_suffix(".mp4")

    def is_done(self, unit: EpisodeUnit) -> bool:
        """True when the episode's labels are already in the staging folder."""
        path = self.record_path(unit)
        return path.is_file() and json.loads(path.read_text()).get("source") == unit.source

    def commit(self, unit: EpisodeUnit, labels: EpisodeLabels) -> None:
        """Keep one episode's labels (atomic; after this a rerun skips it)."""
        write_json_atomic(self.record_path(unit), labels.to_json(), indent=None)

    def load(self, unit: EpisodeUnit) -> EpisodeLabels:
        """One episode's labels."""
        return EpisodeLabels.from_json(json.loads(self.record_path(unit).read_text()))

    def finish(self, units: Sequence[EpisodeUnit]) -> Path:
        """Assemble the dataset from the labelled episodes and move it into place."""
        missing = [u.episode_id for u in units if not self.is_done(u)]
        if missing:
            raise ValueError(f"{len(missing)} episode(s) are not labelled yet: {', '.join(missing[:5])}")
        labels = [self.load(u) for u in units]
        if self.kind == LEROBOT:
            self._finish_lerobot(labels)
        else:
            self._finish_bags(units, labels)
        if self.in_place:
            retired = self.out.parent / f".{self.out.name}.replaced"
            os.replace(self.out, retired)
            os.replace(self.staging, self.out)
            shutil.rmtree(retired)
        else:
            os.replace(self.staging, self.out)
        return self.out

    def _provenance(self) -> dict:
        keys = ("model_id", "mode", "instruction", "stride", "target", "camera", "code_version")
        return {key: self.run.get(key) for key in keys}

    def _signal_features(self) -> dict[str, dict]:
        provenance = self._provenance()
        return {
            REWARD_FEATURE: _signal_feature(
                "change of the estimated task progress from this frame to the next (0 at the last frame)",
                provenance),
            PROGRESS_FEATURE: _signal_feature(
                "estimated task completion in [0, 1] at this frame, from the spatial model", provenance),
        }

    def _finish_lerobot(self, labels: list[EpisodeLabels]) -> None:
        import pyarrow.parquet as pq

        by_episode = {e.episode_index: e for e in labels}
        for path in self.source.data_files():
            relative = path.relative_to(self.source.root)
            table = pq.read_table(path)
            episode = table.column("episode_index").to_numpy()
            frame = table.column("frame_index").to_numpy()
            progress = np.empty(table.num_rows, np.float32)
            reward = np.empty(table.num_rows, np.float32)
            for index in np.unique(episode):
                rows = episode == index
                record = by_episode[int(index)]
                progress[rows] = np.asarray(record.progress, np.float32)[frame[rows]]
                reward[rows] = np.asarray(record.reward, np.float32)[frame[rows]]
            _write_parquet(_with_signal_columns(table, progress, reward), self.staging / relative)
        per_episode = {e.episode_index: self._episode_stats(e) for e in labels}
        for path in sorted((self.source.root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
            table = pq.read_table(path)
            kept = [n for n in table.column_names
                    if not n.startswith((f"stats/{REWARD_FEATURE}/", f"stats/{PROGRESS_FEATURE}/"))]
            table = table.select(kept)
            indices = table.column("episode_index").to_pylist()
            columns = _stats_columns(self._signal_features(), [per_episode[i] for i in indices])
            position = next((i for i, n in enumerate(kept) if n.startswith("meta/episodes/")), len(kept))
            for offset, (name, values) in enumerate(columns.items()):
                table = table.add_column(position + offset, name, [values])
            _write_parquet(table, self.staging / path.relative_to(self.source.root))
        info = dict(self.source.info)
        info["features"] = {**{k: v for k, v in info["features"].items()
                               if k not in (REWARD_FEATURE, PROGRESS_FEATURE)}, **self._signal_features()}
        _json_dump(self.staging / "meta" / "info.json", info)
        stats_path = self.source.root / "meta" / "stats.json"
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
        stats.update(self._dataset_stats(labels))
        _json_dump(self.staging / "meta" / "stats.json", stats)

    @staticmethod
    def _episode_stats(labels: EpisodeLabels) -> dict[str, dict]:
        return {REWARD_FEATURE: feature_stats(np.asarray(labels.reward, np.float32)),
                PROGRESS_FEATURE: feature_stats(np.asarray(labels.progress, np.float32))}

    @staticmethod
    def _dataset_stats(labels: list[EpisodeLabels]) -> dict[str, dict]:
        reward = np.concatenate([np.asarray(e.reward, np.float32) for e in labels])
        progress = np.concatenate([np.asarray(e.progress, np.float32) for e in labels])
        return {REWARD_FEATURE: feature_stats(reward), PROGRESS_FEATURE: feature_stats(progress)}

    def _finish_bags(self, units: Sequence[EpisodeUnit], labels: list[EpisodeLabels]) -> None:
        import pandas as pd
        import pyarrow as pa

        from spatial_mllm_ros.reward.video import video_stream_info

        fps = int(self.run["fps"])
        camera = str(self.run["camera"])
        tasks = list(dict.fromkeys(e.instruction for e in labels))
        first_video = self.staged_video(units[0])
        if not first_video.exists():  # moved into place by a finish that was cut short
            first_video = self.staging / VIDEO_PATH.format(video_key=camera, chunk_index=0, file_index=0)
        features = {camera: {"dtype": "video", "shape": None, "names": ["height", "width", "channels"],
                             "info": video_stream_info(first_video)}}
        video_info = features[camera]["info"]
        features[camera]["shape"] = [video_info["video.height"], video_info["video.width"], 3]
        for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                            ("index", "int64"), ("task_index", "int64")):
            features[name] = {"dtype": dtype, "shape": [1], "names": None}
        features.update(self._signal_features())
        hf_features = {name: {"dtype": spec["dtype"], "_type": "Value"}
                       for name, spec in features.items() if spec["dtype"] != "video"}
        hf_metadata = {HF_METADATA_KEY: json.dumps({"info": {"features": hf_features}}).encode()}
        rows, episode_rows, all_columns = 0, [], []
        for unit, record in zip(units, labels, strict=True):
            index = unit.episode_index
            chunk, file = divmod(index, CHUNKS_SIZE)
            length = record.length
            frame_index = np.arange(length, dtype=np.int64)
            columns = {
                "timestamp": pa.array((frame_index / fps).astype(np.float32)),
                "frame_index": pa.array(frame_index),
                "episode_index": pa.array(np.full(length, index, np.int64)),
                "index": pa.array(np.arange(rows, rows + length, dtype=np.int64)),
                "task_index": pa.array(np.full(length, tasks.index(record.instruction), np.int64)),
                REWARD_FEATURE: pa.array(np.asarray(record.reward, np.float32)),
                PROGRESS_FEATURE: pa.array(np.asarray(record.progress, np.float32)),
            }
            table = pa.table(columns).replace_schema_metadata(hf_metadata)
            _write_parquet(table, self.staging / DATA_PATH.format(chunk_index=chunk, file_index=file))
            video = self.staging / VIDEO_PATH.format(video_key=camera, chunk_index=chunk, file_index=file)
            video.parent.mkdir(parents=True, exist_ok=True)
            if self.staged_video(unit).exists() or not video.exists():  # a finish cut short moved it already
                os.replace(self.staged_video(unit), video)
            stats = {camera: record.image_stats}
            stats.update({name: feature_stats(column.to_numpy()) for name, column in columns.items()})
            all_columns.append(columns)
            prefix = f"videos/{camera}/"
            episode_rows.append({
                "episode_index": index, "tasks": [record.instruction], "length": length,
                "data/chunk_index": chunk, "data/file_index": file,
                "dataset_from_index": rows, "dataset_to_index": rows + length,
                prefix + "chunk_index": chunk, prefix + "file_index": file,
                prefix + "from_timestamp": 0.0, prefix + "to_timestamp": length / fps,
                **{f"stats/{feature}/{stat}": stats[feature][stat]
                   for feature in features for stat in STAT_NAMES},
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows += length
        _write_parquet(pa.Table.from_pylist(episode_rows),
                       self.staging / EPISODES_PATH.format(chunk_index=0, file_index=0))
        pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks)).to_parquet(
            self.staging / "meta" / "tasks.parquet")
        dataset_stats = {camera: self._merged_image_stats([e.image_stats for e in labels])}
        for name in all_columns[0]:
            dataset_stats[name] = feature_stats(np.concatenate([c[name].to_numpy() for c in all_columns]))
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": None, "total_episodes": len(labels),
                "total_frames": rows, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
                "splits": {"train": f"0:{len(labels)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
                "features": features}
        _json_dump(self.staging / "meta" / "info.json", info)
        _json_dump(self.staging / "meta" / "stats.json", dataset_stats)

    @staticmethod
    def _merged_image_stats(per_episode: list[dict]) -> dict:
        """Dataset image statistics from per-episode ones.

        Exact for min, max, mean, std and count (frame-weighted); quantiles are the frame-weighted
        mean of the episodes' quantiles (LeRobot's rule for aggregating them).
        """
        counts = np.asarray([s["count"][0] for s in per_episode], np.float64)
        weights = counts / counts.sum()
        arrays = {name: np.asarray([s[name] for s in per_episode], np.float64) for name in STAT_NAMES
                  if name != "count"}
        mean = np.tensordot(weights, arrays["mean"], axes=1)
        second = np.tensordot(weights, arrays["std"] ** 2 + arrays["mean"] ** 2, axes=1)
        merged = {"min": arrays["min"].min(axis=0), "max": arrays["max"].max(axis=0), "mean": mean,
                  "std": np.sqrt(np.maximum(second - mean ** 2, 0.0))}
        merged.update({name: np.tensordot(weights, arrays[name], axes=1) for name in arrays
                       if name.startswith("q")})
        result = {name: value.tolist() for name, value in merged.items()}
        result["count"] = [int(counts.sum())]
        return {name: result[name] for name in STAT_NAMES}
