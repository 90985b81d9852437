# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Reward labelling on Ray Data: the same per-bag function, one model per worker, many machines.

A dataset larger than one machine is a list of bags; Ray Data spreads it over an actor pool in
which every actor loads the model once (``map_batches`` with a callable class) and labels one bag
per batch with :func:`spatial_mllm_ros.reward.label.label_bag`. Results travel back as JSON rows
and the driver alone appends them to the Parquet file (one writer, atomic rewrites), so the output
and its resumability are exactly those of the single-process ``label-rewards``.

``ray`` is imported only when this runs, so the library imports without it. On GPUs give each
worker ``num_gpus=1`` (one model per GPU); here the tests use a local CPU cluster.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.atomic import json_safe
from spatial_mllm_ros.reward.annotator import TrajectoryScores
from spatial_mllm_ros.reward.label import (
    REWARD_SIGNALS,
    EpisodeResult,
    LabelOptions,
    label_bag,
    load_annotator,
    provenance_for,
    write_summary,
)
from spatial_mllm_ros.reward.lerobot import append_episodes


def _result_to_json(result: EpisodeResult, model_id: str) -> str:
    payload = {"episode_id": result.episode_id, "source": result.source, "num_frames": result.num_frames,
               "error": result.error, "model_id": model_id, "finished_at": time.time(), "scores": None}
    s = result.scores
    if s is not None:
        payload["scores"] = {
            "mode": s.mode, "instruction": s.instruction, "model_id": s.model_id, "target": s.target,
            "stride": s.stride, "frame_indices": s.frame_indices.tolist(), "stamps": s.stamps.tolist(),
            "progress": s.progress.tolist(), "reward": s.reward.tolist(), "values": s.values.tolist(),
            "raw_answers": s.raw_answers, "reasons": s.reasons, "episode_score": s.episode_score,
            "error": s.error, "cancelled": s.cancelled, "model_calls": s.model_calls,
            "elapsed_s": s.elapsed_s, "value_unit": s.value_unit}
    return json.dumps(json_safe(payload), allow_nan=False)


def _nan(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def result_from_json(text: str) -> EpisodeResult:
    """Inverse of the worker's serialisation (nulls back to NaN).

    ``info`` holds the worker's model id and when it finished the bag (Unix time).
    """
    payload = json.loads(text)
    s = payload["scores"]
    scores = None
    if s is not None:
        score = s["episode_score"]
        scores = TrajectoryScores(
            mode=s["mode"], instruction=s["instruction"], model_id=s["model_id"], target=s["target"],
            stride=s["stride"], frame_indices=np.asarray(s["frame_indices"], dtype=np.int64),
            stamps=_nan(s["stamps"]), progress=_nan(s["progress"]), reward=_nan(s["reward"]),
            values=_nan(s["values"]), raw_answers=s["raw_answers"], reasons=s["reasons"],
            episode_score=float("nan") if score is None else score, error=s["error"],
            cancelled=s["cancelled"], model_calls=s["model_calls"], elapsed_s=s["elapsed_s"],
            value_unit=s["value_unit"])
    return EpisodeResult(payload["episode_id"], payload["source"], scores,
                         num_frames=payload["num_frames"], error=payload["error"],
                         info={"model_id": payload["model_id"], "finished_at": payload["finished_at"]})


class BagLabeller:
    """Ray Data worker: loads the model once, then labels one bag per row of each batch."""

    def __init__(self, model_dir: str, options: dict, engine_kwargs: dict | None = None,
                 torch_threads: int = 1):
        import torch

        torch.set_num_threads(max(1, int(torch_threads)))
        self.options = LabelOptions(**options)
        self.annotator = load_annotator(model_dir, **(engine_kwargs or {}))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"bag", "episode_id"}`` columns in, a ``result_json`` column out."""
        out = []
        for bag, episode_id in zip(batch["bag"], batch["episode_id"], strict=True):
            result = label_bag(self.annotator, str(bag), str(episode_id), self.options)
            out.append(_result_to_json(result, self.annotator.model_id))
        return {"result_json": np.asarray(out, dtype=object)}


def label_bags_ray(work: Sequence[tuple[Path, str]], out: Path, options: LabelOptions, model_dir: str,
                   num_workers: int = 2, address: str | None = None, engine_kwargs: dict | None = None,
                   cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, torch_threads: int = 1,
                   show_progress: bool = True,
                   on_result: Callable[[EpisodeResult], None] | None = None) -> dict[str, str]:
    """Label ``(bag, episode id)`` pairs on Ray; append results to ``out``; return failed bags.

    Starts a local Ray instance with ``num_workers`` CPUs when none is running and no ``address``
    is given (and shuts it down afterwards); otherwise joins the given cluster. ``on_result`` is
    called on the driver for every finished bag, after it was written.
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
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"bag": str(bag), "episode_id": eid} for bag, eid in work]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            BagLabeller, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None,
            fn_constructor_kwargs={"model_dir": str(model_dir), "options": vars_of(options),
                                   "engine_kwargs": engine_kwargs or {}, "torch_threads": torch_threads})
        provenance = None
        with tqdm(total=len(items), unit="bag", disable=not show_progress, file=sys.stderr) as bar:
            for row in dataset.iter_rows():
                result = result_from_json(row["result_json"])
                if result.scores is None:
                    failures[result.source] = result.error
                else:
                    provenance = provenance or provenance_for(result.info["model_id"], options)
                    append_episodes(out, [result.to_episode_signals()], REWARD_SIGNALS, provenance)
                write_summary(out, failures)
                if on_result is not None:
                    on_result(result)
                bar.set_description(result.episode_id)
                bar.update(1)
    finally:
        if started_here:
            ray.shutdown()
    return failures


def vars_of(options: LabelOptions) -> dict:
    """Options as a plain dict (sent to the workers)."""
    from dataclasses import asdict

    return asdict(options)
