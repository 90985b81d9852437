# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros label-rewards``: per-frame progress and rewards into a LeRobot v3.0 dataset.

Input: one LeRobot v3.x dataset (a local root, or a Hub dataset id that ``huggingface_hub``
resolves; ``HF_HUB_OFFLINE=1`` keeps it to the local cache), or any number of rosbag2 recordings
(one episode each). Output: a LeRobot v3.0 dataset, the source plus the per-frame features
``next.reward`` and ``progress`` (see :mod:`spatial_mllm_ros.reward.dataset_writer`). Episodes are
labelled one by one in this process, or with ``--ray-workers N`` on a Ray cluster
(:mod:`spatial_mllm_ros.reward.ray_label`); either way each finished episode is kept at once and a
rerun labels only the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from spatial_mllm_ros.reward.annotator import MODES, RewardAnnotator
from spatial_mllm_ros.reward.dataset_writer import DatasetWriter
from spatial_mllm_ros.reward.episodes import (
    AUTO,
    BAG,
    LEROBOT,
    EpisodeError,
    EpisodeLabels,
    EpisodeUnit,
    LabelOptions,
    estimate_bag_fps,
    label_unit,
    load_annotator,
)
from spatial_mllm_ros.reward.lerobot import (
    LeRobotSource,
    is_lerobot_root,
    looks_like_hub_id,
    resolve_hub_dataset,
)


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
    return list(dict.fromkeys(p.resolve() for p in bags))


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


def plan_sources(inputs: Sequence[str]) -> tuple[str, LeRobotSource | None, list[EpisodeUnit], bool]:
    """What to label: the kind, the LeRobot source (or None), the episodes, and whether it came from the Hub.

    Raises:
        ValueError: unknown inputs, LeRobot datasets mixed with bags or with each other.
    """
    datasets, others, from_hub = [], [], False
    for raw in inputs:
        path = Path(raw)
        if path.is_dir() and (path / "meta" / "info.json").is_file():
            if not is_lerobot_root(path):
                LeRobotSource(path)  # raises with the reason (e.g. an old codebase_version)
            datasets.append(path)
        elif not path.exists() and looks_like_hub_id(str(raw)):
            datasets.append(resolve_hub_dataset(str(raw)))
            from_hub = True
        else:
            others.append(raw)
    if datasets:
        if others or len(datasets) > 1:
            raise ValueError("label one LeRobot dataset per run (not several, nor mixed with bags); "
                             f"got {len(datasets)} dataset(s) and {len(others)} other input(s)")
        source = LeRobotSource(datasets[0])
        units = [EpisodeUnit(LEROBOT, str(source.root), index, f"episode_{index:06d}")
                 for index in range(len(source.episodes))]
        return LEROBOT, source, units, from_hub
    bags = find_bags(others)
    units = [EpisodeUnit(BAG, str(bag), index, episode_id)
             for index, (bag, episode_id) in enumerate(zip(bags, episode_ids_for(bags), strict=True))]
    return BAG, None, units, False


def model_id_of(model_dir: str | Path) -> str:
    """The id the engine gives this checkpoint (recorded as provenance)."""
    from spatial_mllm_ros.engine.pipeline import model_fingerprint

    return model_fingerprint(Path(model_dir))


def run_settings(model_id: str, options: LabelOptions, kind: str) -> dict:
    """What every episode of one output shares; a rerun must match it."""
    settings = {"model_id": model_id, "kind": kind, **asdict(options)}
    if kind == LEROBOT:
        for key in ("fps", "image_topic", "depth_topic", "info_topic", "pose_topic", "start", "end"):
            settings.pop(key)
    return settings


def label_episodes(annotator: RewardAnnotator, units: Sequence[EpisodeUnit], options: LabelOptions,
                   writer: DatasetWriter, source: LeRobotSource | None = None, show_progress: bool = True,
                   on_done: Callable[[EpisodeLabels], None] | None = None) -> dict[str, str]:
    """Label episodes one by one in this process, keeping each at once; returns failures by episode."""
    from tqdm import tqdm

    failures: dict[str, str] = {}
    with tqdm(total=len(units), unit="episode", disable=not show_progress, file=sys.stderr) as bar:
        for unit in units:
            bar.set_description(unit.episode_id)
            try:
                labels = label_unit(annotator, unit, options, writer.staged_video(unit), source)
            except EpisodeError as exc:
                failures[unit.episode_id] = f"{unit.source}: {exc}"
            else:
                writer.commit(unit, labels)
                if on_done is not None:
                    on_done(labels)
            bar.update(1)
    return failures


def build_parser(prog: str = "spatial-mllm-ros label-rewards") -> argparse.ArgumentParser:
    """Arguments of ``label-rewards``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="SRC",
                        help="a LeRobot v3 dataset root or Hub dataset id, or rosbag2 directories / .mcap "
                             "files / directories holding them")
    parser.add_argument("--model", required=True, metavar="DIR", help="Spatial-MLLM checkpoint directory")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the labelled LeRobot dataset to create")
    parser.add_argument("--in-place", action="store_true",
                        help="add the labels to the LeRobot source dataset itself instead of --out")
    parser.add_argument("--instruction", default=None,
                        help="the task in words (default for LeRobot: each episode's task; needed for bags)")
    parser.add_argument("--camera", default=None,
                        help="LeRobot camera feature, e.g. observation.images.top (default: the first); "
                             "for bags the name of the video feature written")
    parser.add_argument("--mode", choices=MODES, default="progress")
    parser.add_argument("--stride", type=int, default=1,
                        help="ask the model about every stride-th frame and the last; interpolate between")
    parser.add_argument("--target", type=float, default=None,
                        help="displacement mode: distance in metres that means done")
    parser.add_argument("--image-topic", default=AUTO, help="bags: colour topic (default: discovered)")
    parser.add_argument("--fps", type=int, default=None, help="bags: dataset frame rate (default: estimated)")
    parser.add_argument("--start", type=float, default=None, help="bags: first stamp to read (s)")
    parser.add_argument("--end", type=float, default=None, help="bags: last stamp to read (s)")
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
    if args.instruction is not None and not args.instruction.strip():
        raise ValueError("--instruction must not be empty")
    if args.fps is not None and args.fps < 1:
        raise ValueError(f"--fps must be >= 1, got {args.fps}")
    return LabelOptions(instruction=args.instruction, mode=args.mode, target=args.target, stride=args.stride,
                        camera=args.camera, fps=args.fps, image_topic=args.image_topic, start=args.start,
                        end=args.end)


def prepare_run(inputs: Sequence[str], out: Path | None, options: LabelOptions, model_id: str,
                in_place: bool = False) -> tuple[DatasetWriter, LabelOptions, list[EpisodeUnit],
                                                  LeRobotSource | None]:
    """The output, the completed options, the episodes and the LeRobot source of a run.

    Raises:
        ValueError: bad inputs or a bad combination of options, with the reason.
    """
    kind, source, units, from_hub = plan_sources(inputs)
    if in_place == (out is not None):
        raise ValueError("give exactly one of --out DIR and --in-place")
    if kind == BAG:
        if not options.instruction:
            raise ValueError("bags carry no task string: give --instruction")
        if in_place:
            raise ValueError("--in-place applies to a LeRobot dataset; bags need --out")
        fps, image_topic = estimate_bag_fps(units[0].source, options)
        options = replace(options, image_topic=image_topic)
        options = replace(options, camera=options.bag_camera(), fps=options.fps or fps)
    else:
        if from_hub and in_place:
            raise ValueError("--in-place would change files of the Hugging Face cache; give --out")
        options = replace(options, camera=source.camera(options.camera))
    writer = DatasetWriter(source.root if in_place else out, kind, run_settings(model_id, options, kind),
                           source=source, in_place=in_place)
    return writer, options, units, source


def label_dataset(annotator: RewardAnnotator, inputs: Sequence[str], out: Path | None, options: LabelOptions,
                  in_place: bool = False, show_progress: bool = False) -> tuple[Path, dict[str, str]]:
    """Label every pending episode in this process and write the dataset when all are done.

    Returns the output folder and the failures by episode (with failures nothing is moved into
    place; the labelled episodes wait in the staging folder for a rerun).
    """
    writer, options, units, source = prepare_run(inputs, out, options, annotator.model_id, in_place)
    writer.prepare()
    work = [unit for unit in units if not writer.is_done(unit)]
    failures = label_episodes(annotator, work, options, writer, source, show_progress=show_progress)
    if not failures:
        writer.finish(units)
    return writer.out, failures


def engine_options(args: argparse.Namespace) -> dict:
    """Engine keyword arguments from the command line."""
    kwargs = {"device": args.device, "dtype": args.dtype, "max_frames": args.max_frames}
    if args.max_pixels:
        from spatial_mllm_ros.model.preprocessing import VIDEO_MIN_PIXELS

        # a budget below the default minimum lowers the minimum too (small frames are not up-scaled)
        kwargs["max_pixels"] = args.max_pixels
        kwargs["min_pixels"] = min(args.max_pixels, VIDEO_MIN_PIXELS)
    return kwargs


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``spatial-mllm-ros label-rewards``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        writer, options, units, source = prepare_run(args.inputs, args.out, options_from_args(args),
                                                     model_id_of(args.model), args.in_place)
        writer.prepare()
    except ValueError as exc:
        parser.error(str(exc))
    work = [unit for unit in units if not writer.is_done(unit)]
    print(f"label-rewards: {len(units)} episode(s), {len(units) - len(work)} already labelled in "
          f"{writer.staging}, {len(work)} to label", file=sys.stderr)
    failures: dict[str, str] = {}
    if work and args.ray_workers > 0:
        from spatial_mllm_ros.reward.ray_label import label_episodes_ray

        failures = label_episodes_ray(work, options, writer, model_dir=args.model,
                                      num_workers=args.ray_workers, address=args.ray_address,
                                      engine_kwargs=engine_options(args), show_progress=not args.no_progress)
    elif work:
        annotator = load_annotator(args.model, **engine_options(args))
        failures = label_episodes(annotator, work, options, writer, source,
                                  show_progress=not args.no_progress)
        annotator.qa.close()
    for episode, error in failures.items():
        print(f"label-rewards: FAILED {episode}: {error}", file=sys.stderr)
    if failures:
        print(f"label-rewards: {len(failures)} episode(s) failed; the labelled ones are kept in "
              f"{writer.staging}: rerun to retry", file=sys.stderr)
        return 1
    writer.finish(units)
    print(f"label-rewards: wrote {writer.out}", file=sys.stderr)
    return 0
