# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""LeRobot ``lerobot.frame_signals`` Parquet files: per-frame signals a policy learner can join.

Schema version 1 (DESIGN §7): one row per scored frame with int64 ``index`` (running row number in
the file), ``episode_index`` and ``frame_index`` (position of the frame in its episode), then one
float32 column per signal. The file's key-value metadata holds, under the key
``lerobot.frame_signals``, a JSON document::

    {"schema_version": 1,
     "signals": {"progress": {"description": ..., "direction": "higher", "bounds": [0, 1],
                              "unit": ..., "dtype": "float32"}, ...},
     "provenance": {"model_id": ..., "method": ..., "instruction": ..., "package": ...,
                    "package_version": ..., "created": ..., "updated": ...},
     "episodes": [{"episode_index": 0, "episode_id": ..., "num_frames": ..., ...}, ...]}

Parquet files cannot grow in place, so appending an episode rewrites the file: the old rows and
the new ones go to a temporary file next to the destination, which then replaces it
(``os.replace``), so a reader or a crash never sees half a file. Episodes are small (one float per
frame and signal), which keeps the rewrite cheap.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spatial_mllm_ros import __version__
from spatial_mllm_ros.core.atomic import json_safe

SCHEMA_VERSION = 1
METADATA_KEY = b"lerobot.frame_signals"
INDEX_COLUMNS = ("index", "episode_index", "frame_index")
DIRECTIONS = ("higher", "lower", "none")


@dataclass(frozen=True)
class SignalSpec:
    """What one signal column means: ``direction`` says whether higher values are better."""

    description: str
    direction: str
    bounds: tuple[float | None, float | None]
    unit: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"signal direction must be one of {DIRECTIONS}, got {self.direction!r}")

    def to_json(self) -> dict:
        """The descriptor as stored in the file metadata."""
        return {"description": self.description, "direction": self.direction,
                "bounds": list(self.bounds), "unit": self.unit, "dtype": "float32"}


REWARD_SIGNALS: dict[str, SignalSpec] = {
    "progress": SignalSpec(
        description="Estimated task completion at this frame, from the spatial model comparing the "
                    "episode's first frame with this one; NaN where the answer could not be parsed.",
        direction="higher", bounds=(0.0, 1.0), unit="fraction"),
    "reward": SignalSpec(
        description="Change in estimated progress since the previous scored frame (0 at the first "
                    "frame); NaN next to a NaN progress.",
        direction="higher", bounds=(-1.0, 1.0), unit="fraction per scored frame"),
}


@dataclass
class Provenance:
    """Where the signals came from; stored once per file."""

    model_id: str
    method: str
    instruction: str
    package: str = "spatial_mllm_ros"
    package_version: str = __version__
    created: str = field(default_factory=lambda: utc_now_iso())


@dataclass
class EpisodeSignals:
    """One episode's rows: frame indices, one array per signal, and free-form episode info."""

    episode_id: str
    frame_index: np.ndarray
    signals: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a ``Z`` suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_metadata(path: str | Path) -> dict:
    """The ``lerobot.frame_signals`` JSON document of a file (ValueError when absent)."""
    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a lerobot.frame_signals file (no {METADATA_KEY.decode()} metadata)")
    document = json.loads(metadata[METADATA_KEY])
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: unsupported frame_signals schema_version "
                         f"{document.get('schema_version')!r} (this code reads {SCHEMA_VERSION})")
    return document


def read_frame_signals(path: str | Path) -> tuple[pa.Table, dict]:
    """The table and its metadata document."""
    document = read_metadata(path)
    return pq.read_table(path), document


def episode_ids(path: str | Path) -> dict[str, int]:
    """``episode_id -> episode_index`` of the episodes already in ``path`` (empty if no file)."""
    if not Path(path).exists():
        return {}
    return {e["episode_id"]: int(e["episode_index"]) for e in read_metadata(path)["episodes"]}


def arrow_schema(signal_names: Sequence[str]) -> pa.Schema:
    """The column layout of schema version 1 for these signals (metadata not attached)."""
    return pa.schema([(name, pa.int64()) for name in INDEX_COLUMNS]
                     + [(name, pa.float32()) for name in signal_names])


def _episode_table(episode: EpisodeSignals, episode_index: int, first_row: int,
                   signal_names: Sequence[str]) -> pa.Table:
    frame_index = np.asarray(episode.frame_index, dtype=np.int64)
    if frame_index.ndim != 1:
        raise ValueError(f"episode {episode.episode_id!r}: frame_index must be one-dimensional")
    if set(episode.signals) != set(signal_names):
        raise ValueError(f"episode {episode.episode_id!r} has signals {sorted(episode.signals)}, "
                         f"the file declares {sorted(signal_names)}")
    columns = {
        "index": np.arange(first_row, first_row + frame_index.size, dtype=np.int64),
        "episode_index": np.full(frame_index.size, episode_index, dtype=np.int64),
        "frame_index": frame_index,
    }
    for name in signal_names:
        values = np.asarray(episode.signals[name], dtype=np.float32)
        if values.shape != frame_index.shape:
            raise ValueError(f"episode {episode.episode_id!r}: signal {name!r} has {values.size} "
                             f"values for {frame_index.size} frames")
        columns[name] = values
    return pa.table(columns, schema=arrow_schema(signal_names))


def append_episodes(path: str | Path, episodes: Sequence[EpisodeSignals],
                    signals: dict[str, SignalSpec], provenance: Provenance) -> list[int]:
    """Append episodes to a frame-signals file (created when missing); returns their indices.

    An existing file must declare the same signals and come from the same model, method and
    instruction (mixing them would make one column mean two things): otherwise ValueError, with
    a hint to write a new file. Episode ids must be new to the file.
    """
    path = Path(path)
    signal_names = list(signals)
    descriptors = {name: spec.to_json() for name, spec in signals.items()}
    if path.exists():
        old_table, document = read_frame_signals(path)
        if document["signals"] != descriptors:
            raise ValueError(f"{path} declares signals {sorted(document['signals'])} described "
                             "differently; write the new labels to a new file")
        old = document["provenance"]
        for key in ("model_id", "method", "instruction"):
            if old.get(key) != getattr(provenance, key):
                raise ValueError(f"{path} was labelled with {key}={old.get(key)!r}, not "
                                 f"{getattr(provenance, key)!r}; write the new labels to a new file")
        old_table = old_table.select(list(arrow_schema(signal_names).names)).cast(arrow_schema(signal_names))
        tables = [old_table]
        listed = document["episodes"]
        provenance_json = {**old, "updated": utc_now_iso()}
    else:
        tables, listed = [], []
        provenance_json = {**asdict(provenance), "updated": utc_now_iso()}
    known = {e["episode_id"] for e in listed}
    next_episode = max((int(e["episode_index"]) for e in listed), default=-1) + 1
    next_row = sum(t.num_rows for t in tables)
    assigned = []
    for episode in episodes:
        if episode.episode_id in known:
            raise ValueError(f"episode {episode.episode_id!r} is already in {path}")
        table = _episode_table(episode, next_episode, next_row, signal_names)
        tables.append(table)
        listed.append(json_safe({"episode_index": next_episode, "episode_id": episode.episode_id,
                                 "num_frames": table.num_rows, **episode.info}))
        known.add(episode.episode_id)
        assigned.append(next_episode)
        next_episode += 1
        next_row += table.num_rows
    document = {"schema_version": SCHEMA_VERSION, "signals": descriptors,
                "provenance": json_safe(provenance_json), "episodes": listed}
    schema = arrow_schema(signal_names).with_metadata(
        {METADATA_KEY: json.dumps(document, allow_nan=False).encode()})
    combined = (pa.concat_tables(tables) if tables else schema.empty_table()).cast(schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(combined, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return assigned
