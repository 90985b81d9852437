# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros label-rewards``: per-frame progress and rewards of many bags into one Parquet.

Offline labelling of a dataset of robot recordings: every bag is one episode; its frames are
scored by :class:`~spatial_mllm_ros.reward.annotator.RewardAnnotator` and appended to a
``lerobot.frame_signals`` file, with a JSON summary next to it. The output is rewritten atomically
after every episode, so an interrupted run loses at most the bag in progress, and a second run
skips the episodes already written (resumable). The per-bag function :func:`label_bag` is the unit
of work that :mod:`spatial_mllm_ros.reward.ray_label` distributes over a Ray cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_mllm_ros.bag.reader import AUTO
from spatial_mllm_ros.core.atomic import write_json_atomic
from spatial_mllm_ros.reward.annotator import MODES, RewardAnnotator, TrajectoryScores
from spatial_mllm_ros.reward.lerobot import (
    REWARD_SIGNALS,
    EpisodeSignals,
    Provenance,
    append_episodes,
    episode_ids,
    read_metadata,
    utc_now_iso,
)

DEFAULT_TOPICS = {"image_topic": "/camera/color/image_raw", "depth_topic": "/camera/depth/image_raw",
                  "info_topic": "/camera/color/camera_info", "pose_topic": "/camera/pose"}


@dataclass(frozen=True)
class LabelOptions:
    """How every bag of a run is scored (the same for all episodes of one output file)."""

    instruction: str
    mode: str = "progress"
    target: float | None = None
    stride: int = 1
    # in bags, the reader finds the camera streams and the pose source (tf or a pose topic) itself
    image_topic: str = AUTO
    depth_topic: str | None = AUTO
    info_topic: str | None = AUTO
    pose_topic: str | None = AUTO
    start: float | None = None
    end: float | None = None


@dataclass
class EpisodeResult:
    """The outcome of labelling one bag: scores, or an error that kept it from being scored."""

    episode_id: str
    source: str
    scores: TrajectoryScores | None
    num_frames: int = 0
    error: str = ""
    info: dict = field(default_factory=dict)

    def to_episode_signals(self) -> EpisodeSignals:
        """Rows for the Parquet file (requires scores)."""
        if self.scores is None:
            raise ValueError(f"episode {self.episode_id!r} has no scores: {self.error}")
        s = self.scores
        return EpisodeSignals(
            episode_id=self.episode_id, frame_index=s.frame_indices,
            signals={"progress": s.progress, "reward": s.reward},
            info={"source": self.source, "num_bag_frames": self.num_frames,
                  "start_stamp": float(s.stamps[0]), "end_stamp": float(s.stamps[-1]),
                  "stride": s.stride, "episode_score": s.episode_score, "voc": s.voc,
                  "num_invalid": s.num_invalid, "model_calls": s.model_calls,
                  "elapsed_s": round(s.elapsed_s, 3),
                  "error": "; ".join(filter(None, [self.error, s.error]))})


def is_bag(path: Path) -> bool:
    """A rosbag2 directory (has metadata.yaml) or a bare .mcap file."""
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (
        path.is_file() and path.suffix == ".mcap")


def find_bags(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand inputs into bags: a bag stays itself, another directory gives every bag inside it.

    Raises:
        ValueError: an input does not exist, or a directory holds no bag.
    """
    bags: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise ValueError(f"{path}: no such bag or directory")
        if is_bag(path):
            bags.append(path)
            continue
        if not path.is_dir():
            raise ValueError(f"{path} is neither a rosbag2 directory nor an .mcap file")
        found = sorted(p for p in path.rglob("*") if is_bag(p)
                       and not any(is_bag(parent) for parent in p.parents))
        if not found:
            raise ValueError(f"{path}: no bags inside (looked for metadata.yaml dirs and .mcap files)")
        bags.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in bags))
    return unique


def episode_ids_for(bags: Sequence[Path]) -> list[str]:
    """One id per bag: its name (``.mcap`` suffix dropped), prefixed by parent dirs if ambiguous."""
    names = [bag.stem if bag.suffix == ".mcap" else bag.name for bag in bags]
    depths = [0] * len(bags)

    def make(i: int) -> str:
        return "/".join([*bags[i].parts[len(bags[i].parts) - 1 - depths[i]:-1], names[i]])

    ids = [make(i) for i in range(len(bags))]
    for _ in range(8):
        clashing = [i for i, eid in enumerate(ids) if ids.count(eid) > 1]
        if not clashing:
            break
        for i in clashing:
            depths[i] += 1
            ids[i] = make(i)
    return ids


def read_subsampled(bag: Path, options: LabelOptions) -> tuple[list, list[int], int, str]:
    """Every stride-th frame of a bag plus its last, their bag positions, the frame count, an error.

    Only the kept frames stay in memory. A bag that breaks part way yields what was readable and
    the error message (the frames before the break still form a valid, shorter episode); one that
    cannot be read at all raises (FileNotFoundError, ValueError, BagReadError).
    """
    from spatial_mllm_ros.bag.reader import read_frames

    kept, positions = [], []
    last, count, error = None, 0, ""
    frames: Iterable = read_frames(bag, image_topic=options.image_topic, depth_topic=options.depth_topic,
                                   info_topic=options.info_topic, pose_topic=options.pose_topic,
                                   start=options.start, end=options.end)
    try:
        for frame in frames:
            if count % options.stride == 0:
                kept.append(frame)
                positions.append(count)
            last = frame
            count += 1
    except Exception as exc:  # BagReadError and friends: keep what was read
        if count == 0:
            raise
        error = f"bag read stopped after {count} frames: {exc}"
    if count and positions[-1] != count - 1:
        kept.append(last)
        positions.append(count - 1)
    return kept, positions, count, error


def label_bag(annotator: RewardAnnotator, bag: str | Path, episode_id: str, options: LabelOptions,
              progress_callback=None, cancel_event: threading.Event | None = None) -> EpisodeResult:
    """Score one bag as one episode (never raises for a bad bag: the result carries the error)."""
    bag = Path(bag)
    try:
        frames, positions, count, read_error = read_subsampled(bag, options)
    except Exception as exc:
        return EpisodeResult(episode_id, str(bag), None, error=f"cannot read {bag}: {exc}")
    if not frames:
        window = ("" if options.start is None and options.end is None
                  else f" between {options.start} and {options.end} s")
        return EpisodeResult(episode_id, str(bag), None, num_frames=count,
                             error=f"{bag}: no frames on {options.image_topic}{window}")
    scores = annotator.score(frames, options.instruction, mode=options.mode, target=options.target,
                             stride=1, progress_callback=progress_callback, cancel_event=cancel_event)
    if scores.model_failure:
        # Not a property of the recording (a broken model set-up): report it, write nothing, so
        # that a later run retries the bag instead of skipping it as done.
        return EpisodeResult(episode_id, str(bag), None, num_frames=count,
                             error=f"{bag}: every model call failed: {scores.model_failure}")
    # The annotator saw only the kept frames: map its indices back to positions in the bag.
    in_bag = np.asarray(positions, dtype=np.int64)[scores.frame_indices]
    scores = dataclasses.replace(scores, frame_indices=in_bag, stride=options.stride)
    return EpisodeResult(episode_id, str(bag), scores, num_frames=count, error=read_error)


def provenance_for(model_id: str, options: LabelOptions) -> Provenance:
    """File provenance: the method string records mode, target and stride."""
    method = options.mode
    if options.target is not None:
        method += f"(target={options.target:g}m)"
    return Provenance(model_id=model_id, method=method, instruction=options.instruction)


def summary_path(out: Path) -> Path:
    """``rewards.parquet`` -> ``rewards.json``."""
    return out.with_suffix(".json")


def write_summary(out: Path, failures: dict[str, str]) -> dict:
    """JSON summary of the Parquet file's episodes plus bags that could not be labelled."""
    document = read_metadata(out) if out.exists() else {"episodes": [], "provenance": {}, "signals": {}}
    episodes = document["episodes"]
    scores = [e["episode_score"] for e in episodes if e.get("episode_score") is not None]
    vocs = [e["voc"] for e in episodes if e.get("voc") is not None]
    summary = {
        "output": str(out), "written": utc_now_iso(), "provenance": document["provenance"],
        "signals": document["signals"], "num_episodes": len(episodes),
        "num_rows": sum(int(e["num_frames"]) for e in episodes),
        "mean_episode_score": float(np.mean(scores)) if scores else math.nan,
        "mean_voc": float(np.mean(vocs)) if vocs else math.nan,
        "episodes": episodes, "failed_bags": failures,
    }
    write_json_atomic(summary_path(out), summary)
    return summary


def load_annotator(model_dir: str, device: str = "cpu", dtype: str = "float32", max_frames: int = 16,
                   max_new_tokens: int = 16, frames_per_call: int | None = None,
                   backend: str = "torch", **engine_options) -> RewardAnnotator:
    """A SpatialQA engine on ``model_dir`` wrapped in an annotator (``engine_options``: e.g. max_pixels)."""
    from spatial_mllm_ros.engine import SpatialQA

    qa = SpatialQA(model_dir, backend=backend, device=device, dtype=dtype, max_frames=max_frames,
                   max_new_tokens=max_new_tokens, **engine_options)
    return RewardAnnotator(qa, frames_per_call=frames_per_call)


def build_parser(prog: str = "spatial-mllm-ros label-rewards") -> argparse.ArgumentParser:
    """Arguments of ``label-rewards`` (shared with the Ray runner)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="BAG_OR_DIR",
                        help="rosbag2 directories / .mcap files, or directories holding them")
    parser.add_argument("--instruction", required=True, help="the task, e.g. 'push the red box to the wall'")
    parser.add_argument("--mode", choices=MODES, default="progress")
    parser.add_argument("--model", required=True, metavar="DIR", help="Spatial-MLLM checkpoint directory")
    parser.add_argument("--out", required=True, type=Path, metavar="rewards.parquet")
    parser.add_argument("--stride", type=int, default=1, help="score every stride-th frame (default 1)")
    parser.add_argument("--target", type=float, default=None,
                        help="displacement mode: distance in metres that means done")
    parser.add_argument("--image-topic", default=AUTO, help="colour topic in the bags (default: discovered)")
    parser.add_argument("--start", type=float, default=None, help="first stamp to read (s)")
    parser.add_argument("--end", type=float, default=None, help="last stamp to read (s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-frames", type=int, default=16, help="frames per model call")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="per-frame pixel budget of the model input (default: the engine's, 768*28*28)")
    parser.add_argument("--ray-workers", type=int, default=0,
                        help="label on a Ray cluster with this many model workers (0: in this process)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> LabelOptions:
    """Validated options (ValueError with the reason)."""
    if args.stride < 1:
        raise ValueError(f"--stride must be >= 1, got {args.stride}")
    if args.target is not None and (args.mode != "displacement" or not args.target > 0):
        raise ValueError("--target needs --mode displacement and a positive distance in metres")
    if not args.instruction.strip():
        raise ValueError("--instruction must not be empty")
    return LabelOptions(instruction=args.instruction, mode=args.mode, target=args.target,
                        stride=args.stride, image_topic=args.image_topic, start=args.start, end=args.end)


def pending_bags(bags: Sequence[Path], out: Path) -> list[tuple[Path, str]]:
    """(bag, episode id) pairs not yet in ``out``."""
    done = episode_ids(out)
    return [(bag, eid) for bag, eid in zip(bags, episode_ids_for(bags), strict=True) if eid not in done]


def label_bags(annotator: RewardAnnotator, work: Sequence[tuple[Path, str]], out: Path,
               options: LabelOptions, show_progress: bool = True) -> dict[str, str]:
    """Label bags one by one, appending each episode to ``out``; returns failed bags' errors."""
    from tqdm import tqdm

    provenance = provenance_for(annotator.model_id, options)
    failures: dict[str, str] = {}
    with tqdm(total=len(work), unit="bag", disable=not show_progress, file=sys.stderr) as bar:
        for bag, episode_id in work:
            bar.set_description(episode_id)

            def on_progress(done, total, bar=bar):
                bar.set_postfix_str(f"frames {done}/{total}")

            result = label_bag(annotator, bag, episode_id, options, progress_callback=on_progress)
            if result.scores is None:
                failures[str(bag)] = result.error
            else:
                append_episodes(out, [result.to_episode_signals()], REWARD_SIGNALS, provenance)
            write_summary(out, failures)
            bar.update(1)
    return failures


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``spatial-mllm-ros label-rewards``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
        bags = find_bags(args.inputs)
        work = pending_bags(bags, args.out)
    except ValueError as exc:
        parser.error(str(exc))
    skipped = len(bags) - len(work)
    print(f"label-rewards: {len(bags)} bag(s), {skipped} already in {args.out}, {len(work)} to label",
          file=sys.stderr)
    if not work:
        write_summary(args.out, {})
        return 0
    engine_kwargs = {"device": args.device, "dtype": args.dtype, "max_frames": args.max_frames}
    if args.max_pixels:
        from spatial_mllm_ros.model.preprocessing import VIDEO_MIN_PIXELS

        # a budget below the default minimum lowers the minimum too (small frames are not up-scaled)
        engine_kwargs["max_pixels"] = args.max_pixels
        engine_kwargs["min_pixels"] = min(args.max_pixels, VIDEO_MIN_PIXELS)
    if args.ray_workers > 0:
        from spatial_mllm_ros.reward.ray_label import label_bags_ray

        failures = label_bags_ray(work, args.out, options, model_dir=args.model,
                                  num_workers=args.ray_workers, address=args.ray_address,
                                  engine_kwargs=engine_kwargs, show_progress=not args.no_progress)
    else:
        annotator = load_annotator(args.model, **engine_kwargs)
        failures = label_bags(annotator, work, args.out, options, show_progress=not args.no_progress)
    for bag, error in failures.items():
        print(f"label-rewards: FAILED {bag}: {error}", file=sys.stderr)
    print(f"label-rewards: wrote {args.out} and {summary_path(args.out)}", file=sys.stderr)
    return 1 if failures else 0
