# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""``spatial-mllm-ros demo`` (``make demo``): the package's main job on a synthetic scene.

1. a model: ``--model DIR`` (a downloaded Spatial-MLLM checkpoint) or a tiny random one made once;
2. a synthetic RGB-D scene written once as a real rosbag2 with VSI-Bench questions and exact truth;
3. replay evaluation of every question (resumable; report folder with plots);
4. the reward annotator over the camera trajectory, written as a LeRobot v3.0 dataset (the camera
   as an AV1 video feature, ``next.reward`` and ``progress`` per frame), scored against the
   scene's true progress with VOC over the frames the model answered.
Everything is cached in ``--data`` and ``--out``: a second run reuses what is already computed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

RANDOM_WEIGHTS_NOTICE = (
    "NOTE: the tiny demo model has RANDOM weights: its answers are meaningless (mostly unparseable)\n"
    "and its scores near zero. The pipeline around it (buffer, frame selection, model, parsing,\n"
    "metrics, rewards) is the real one. Pass --model /path/to/Spatial-MLLM-v1.1-Instruct-135K\n"
    "(make demo MODEL=...) for real answers."
)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``spatial-mllm-ros demo``."""
    parser = argparse.ArgumentParser(prog="spatial-mllm-ros demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="Spatial-MLLM checkpoint directory (default: a tiny random model)")
    parser.add_argument("--data", default="data", help="where the scene and tiny model are kept (data/)")
    parser.add_argument("--out", default="demo_output", help="evaluation and reward outputs (demo_output/)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    parser.add_argument("--frames", type=int, default=120, help="frames in the synthetic scene")
    parser.add_argument("--max-frames", type=int, default=16, help="frames shown to the model per question")
    parser.add_argument("--reward-stride", type=int, default=8, help="score every n-th trajectory frame")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--fresh", action="store_true", help="recompute answers and rewards")
    return parser


def ensure_tiny_model(data_dir: Path) -> Path:
    """The tiny random checkpoint, made once."""
    from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

    model_dir = data_dir / "tiny-model"
    if not (model_dir / "config.json").is_file() or not any(model_dir.glob("*.safetensors")):
        print(f"[demo] writing a tiny random checkpoint to {model_dir}", flush=True)
        make_tiny_checkpoint(model_dir, preset="tiny", seed=0)
    return model_dir


def ensure_scene(data_dir: Path, seed: int, frames: int):
    """The synthetic scene bag + questions, made once per seed and frame count."""
    from spatial_mllm_ros.bag.scene import ScenePaths, write_scene

    root = data_dir / f"scene-seed{seed}-{frames}f"
    paths = ScenePaths(root=root, bag=root / "bag", questions=root / "questions.json",
                       scene_json=root / "scene.json")
    if not (paths.scene_json.is_file() and paths.questions.is_file() and paths.bag.is_dir()):
        print(f"[demo] rendering a synthetic scene ({frames} frames) into {root}", flush=True)
        paths = write_scene(root, seed=seed, num_frames=frames, overwrite=True)
    return paths


def label_trajectory(qa, scene_paths, out_dir: Path, stride: int, fresh: bool) -> dict:
    """Progress labels over the scene's trajectory as a LeRobot dataset, with VOC against the truth."""
    import shutil

    import numpy as np

    from spatial_mllm_ros.reward.annotator import RewardAnnotator
    from spatial_mllm_ros.reward.episodes import LabelOptions
    from spatial_mllm_ros.reward.label import label_dataset
    from spatial_mllm_ros.reward.voc import value_order_correlation

    description = json.loads(scene_paths.scene_json.read_text())
    target = description["target"]["category"]
    out = out_dir / "rewards"
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out_dir / f".{out.name}.partial", ignore_errors=True)
    options = LabelOptions(instruction=f"walk up to the {target}", mode="progress", stride=stride)
    failures: dict = {}
    if not out.exists():
        _, failures = label_dataset(RewardAnnotator(qa), [str(scene_paths.bag)], out, options,
                                    show_progress=True)
    result = {"dataset": str(out), "instruction": options.instruction, "failures": failures,
              "episode_score": None, "voc_vs_frame_order": None}
    records = sorted((out / "meta" / "rewards" / "bags").glob("*.json")) if out.exists() else []
    if records:
        episode = json.loads(records[0].read_text())
        valid = episode["valid_frames"]
        true_progress = [description["frames"][i]["target_progress"] for i in valid]
        result.update(episode_score=episode["episode_score"], voc_vs_frame_order=episode["voc"],
                      scored_frames=episode["scored_frames"],
                      voc_vs_true_progress=value_order_correlation(
                          np.asarray(episode["progress"])[valid], true_progress))
    return result


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end and print where everything is."""
    args = build_parser().parse_args(argv)
    from spatial_mllm_ros.bag.evaluate import evaluate_bag, format_table
    from spatial_mllm_ros.engine import SpatialQA

    data_dir, out_dir = Path(args.data), Path(args.out)
    random_weights = args.model is None
    model_dir = ensure_tiny_model(data_dir) if random_weights else Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"[demo] {model_dir} is not a checkpoint directory (no config.json)", file=sys.stderr)
        return 2
    if random_weights:
        print(RANDOM_WEIGHTS_NOTICE, flush=True)
    scene = ensure_scene(data_dir, args.seed, args.frames)

    qa = SpatialQA(model_dir, device=args.device, dtype=args.dtype, max_frames=args.max_frames)
    print(f"[demo] model {qa.model_id} on {qa.backend_name}; answering {scene.questions}", flush=True)
    evaluation = evaluate_bag(scene.bag, scene.questions, qa, out_dir / "eval", max_frames=args.max_frames,
                              fresh=args.fresh)
    print("[demo] labelling per-frame progress over the camera trajectory", flush=True)
    rewards = label_trajectory(qa, scene, out_dir, args.reward_stride, args.fresh)
    qa.close()

    print()
    print("== VSI-Bench scores on the synthetic scene (percent)")
    print(format_table(evaluation.summary, evaluation.task_counts, evaluation.summary_lenient))
    print()
    print("== reward annotator")
    print(f"instruction           {rewards['instruction']}")
    print(f"episode score         {_fmt(rewards['episode_score'])}")
    print(f"VOC vs frame order    {_fmt(rewards['voc_vs_frame_order'])}")
    print(f"VOC vs true progress  {_fmt(rewards.get('voc_vs_true_progress'))}")
    if rewards["failures"]:
        print(f"failed                {rewards['failures']}")
    print()
    print(f"answers    {evaluation.results_json} (+ .csv, answers.jsonl)")
    if evaluation.report_dir:
        print(f"report     {evaluation.report_dir}  ({len(evaluation.plots)} plots)")
    print(f"rewards    {rewards['dataset']} (LeRobot v3.0 dataset: next.reward, progress)")
    if random_weights:
        print("\n(random weights: the numbers above show the pipeline works, not what the model knows)")
    return 0
