# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward labelling on Ray Data: episodes as the units of work, one model per worker.

A large LeRobot dataset (or a large set of bags) is a list of episodes; Ray Data spreads it over
an actor pool in which every actor loads the model once (``map_batches`` with a callable class)
and labels one episode per batch with :func:`spatial_mllm_ros.reward.episodes.label_unit`,
decoding that episode's frames itself. Labels travel back as JSON rows and the driver alone keeps
them (:meth:`DatasetWriter.commit`), so the output and its resumability are exactly those of the
single-process ``label-rewards``. Bag episodes encode their video straight into the output's
staging folder, which must therefore be on a file system the workers share.

``ray`` is imported only when this runs, so the library imports without it. On GPUs give each
worker ``num_gpus=1`` (one model per GPU); here the tests use a local CPU cluster.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spatial_mllm_ros.reward.dataset_writer import DatasetWriter
from spatial_mllm_ros.reward.episodes import (
    EpisodeError,
    EpisodeLabels,
    EpisodeUnit,
    LabelOptions,
    label_unit,
    load_annotator,
)


class EpisodeLabeller:
    """Ray Data worker: loads the model once, then labels one episode per row of each batch."""

    def __init__(self, model_dir: str, options: dict, engine_kwargs: dict | None = None,
                 torch_threads: int = 1):
        import torch

        torch.set_num_threads(max(1, int(torch_threads)))
        self.options = LabelOptions(**options)
        self.annotator = load_annotator(model_dir, **(engine_kwargs or {}))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``unit`` and ``video`` columns in (JSON, path), a ``result`` JSON column out."""
        out = []
        for unit_json, video in zip(batch["unit"], batch["video"], strict=True):
            unit = EpisodeUnit(**json.loads(str(unit_json)))
            try:
                labels = label_unit(self.annotator, unit, self.options, video_path=Path(str(video)))
                payload = {"labels": labels.to_json()}
            except EpisodeError as exc:
                payload = {"error": f"{unit.source}: {exc}"}
            payload.update(episode_id=unit.episode_id, finished_at=time.time())
            out.append(json.dumps(payload, allow_nan=False))
        return {"result": np.asarray(out, dtype=object)}


def label_episodes_ray(units: Sequence[EpisodeUnit], options: LabelOptions, writer: DatasetWriter,
                       model_dir: str, num_workers: int = 2, address: str | None = None,
                       engine_kwargs: dict | None = None, cpus_per_worker: float = 1.0,
                       gpus_per_worker: float = 0.0, torch_threads: int = 1, show_progress: bool = True,
                       on_done: Callable[[EpisodeLabels, float], None] | None = None) -> dict[str, str]:
    """Label episodes on Ray and keep each as it arrives; returns failures by episode id.

    Starts a local Ray instance with ``num_workers`` CPUs when none is running and no ``address``
    is given (and shuts it down afterwards); otherwise joins the given cluster. ``on_done`` gets
    every labelled episode and the time its worker finished it (Unix seconds), after it was kept.
    """
    import ray
    from tqdm import tqdm

    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    started_here = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=max(num_workers, int(np.ceil(num_workers * cpus_per_worker))),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started_here = True
    failures: dict[str, str] = {}
    by_id = {unit.episode_id: unit for unit in units}
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"unit": json.dumps(asdict(unit)), "video": str(writer.staged_video(unit))}
                 for unit in units]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            EpisodeLabeller, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None,
            fn_constructor_kwargs={"model_dir": str(model_dir), "options": asdict(options),
                                   "engine_kwargs": engine_kwargs or {}, "torch_threads": torch_threads})
        with tqdm(total=len(items), unit="episode", disable=not show_progress, file=sys.stderr) as bar:
            for row in dataset.iter_rows():
                payload = json.loads(row["result"])
                unit = by_id[payload["episode_id"]]
                if "error" in payload:
                    failures[unit.episode_id] = payload["error"]
                else:
                    labels = EpisodeLabels.from_json(payload["labels"])
                    writer.commit(unit, labels)
                    if on_done is not None:
                        on_done(labels, payload["finished_at"])
                bar.set_description(unit.episode_id)
                bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
    return failures
