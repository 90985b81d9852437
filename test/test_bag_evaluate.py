# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Offline evaluation over a real rosbag2 scene with the real engine and a tiny random checkpoint.

Checks what an engineer relies on: every question answered and scored with the VSI-Bench metrics,
strict-JSON and CSV results that agree with each other, a report with real plots, a run that is
interrupted and resumed ending exactly like an uninterrupted one, and a damaged bag that stops with
a clear error while the answers already computed stay on disk.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from mcap_ros2.writer import Writer as McapRos2Writer
from PIL import Image
from rosbags.typesys import Stores, get_typestore

from spatial_mllm_ros.bag.evaluate import (
    ANSWERS_FILE,
    RESULTS_JSON,
    UniformSampler,
    evaluate_bag,
    load_answer_log,
    load_questions,
    main,
    read_bag_frames,
)
from spatial_mllm_ros.bag.reader import BagReadError, read_frames
from spatial_mllm_ros.bag.scene import make_scene, write_scene
from spatial_mllm_ros.core.geometry import pose_to_translation_quaternion
from spatial_mllm_ros.core.metrics import aggregate_vsibench, score_question
from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint

NUM_FRAMES = 24
MAX_FRAMES = 4
MAX_NEW_TOKENS = 6


class SimulatedCrashError(RuntimeError):
    """Raised from the on_answer callback to simulate a crash after N answers."""


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path} holds the non-JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # mcap storage: truncating it leaves a readable prefix (the damaged-bag tests need that)
    root = tmp_path_factory.mktemp("scene") / "room"
    return write_scene(root, seed=0, num_frames=NUM_FRAMES, storage="mcap")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", preset="tiny")


@pytest.fixture(scope="module")
def qa(checkpoint):
    torch.set_num_threads(1)
    engine = SpatialQA(checkpoint, max_frames=MAX_FRAMES, max_new_tokens=MAX_NEW_TOKENS)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def full_run(scene, qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "out"
    return evaluate_bag(scene.bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False)


def _comparable(rows):
    return [(r["id"], r["raw_text"], r["score"], tuple(r["frame_stamps"]), r["error"]) for r in rows]


def test_every_question_answered_and_scored(scene, full_run):
    questions = json.loads(scene.questions.read_text())
    frames, bag_error, _ = read_bag_frames(scene.bag)
    stamps = {f.stamp for f in frames}
    assert bag_error == "" and full_run.frames_read == NUM_FRAMES == len(frames)
    assert [r["id"] for r in full_run.rows] == [str(q["id"]) for q in questions]
    assert full_run.answered_now == len(questions) and full_run.reused == 0
    for row, question in zip(full_run.rows, questions, strict=True):
        assert row["error"] == "", row
        assert row["num_frames"] == MAX_FRAMES
        assert row["frame_stamps"] == sorted(row["frame_stamps"]) and set(row["frame_stamps"]) <= stamps
        options = [o.split(". ", 1)[1] for o in question["options"]] if question["options"] else None
        assert row["options"] == options
        lenient = score_question(question["question_type"], row["raw_text"], question["ground_truth"],
                                 options)
        official = score_question(question["question_type"], row["raw_text"], question["ground_truth"],
                                  options, strict_vsibench=True)
        assert row["score_lenient"] == pytest.approx(lenient)
        assert row["score"] == pytest.approx(official)
    expected_summary = aggregate_vsibench(
        [{"question_type": r["question_type"], "score": r["score"]} for r in full_run.rows])
    assert full_run.summary == pytest.approx(expected_summary)
    assert full_run.summary_lenient == pytest.approx(aggregate_vsibench(
        [{"question_type": r["question_type"], "score": r["score_lenient"]} for r in full_run.rows]))
    tasks = [t for t in full_run.summary if t != "overall"]
    assert "object_rel_direction" in tasks and not any(t.startswith("object_rel_direction_") for t in tasks)
    assert full_run.overall == pytest.approx(np.mean([full_run.summary[t] for t in tasks]))
    assert sum(full_run.task_counts.values()) == len(questions)


def test_result_files_are_valid_and_agree(full_run):
    payload = _strict_json(full_run.results_json)
    assert payload["complete"] is True and payload["unanswered"] == 0
    assert payload["questions"] == len(full_run.rows) == len(payload["rows"])
    assert payload["summary"] == pytest.approx(full_run.summary)
    assert payload["config"]["max_frames"] == MAX_FRAMES and payload["config"]["frames"] == NUM_FRAMES
    with full_run.results_csv.open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["id"] for r in csv_rows] == [r["id"] for r in full_run.rows]
    for csv_row, row in zip(csv_rows, full_run.rows, strict=True):
        assert float(csv_row["score"]) == pytest.approx(row["score"])
        assert csv_row["raw_text"] == row["raw_text"]
        csv_stamps = [float(s) for s in csv_row["frame_stamps"].split()]
        assert csv_stamps == pytest.approx(row["frame_stamps"], abs=1e-6)
    answers = full_run.answers_jsonl.read_text().splitlines()
    assert len(answers) == len(full_run.rows) and all(json.loads(line)["id"] for line in answers)
    assert not list(full_run.out_dir.glob("*.tmp")) and not list(full_run.out_dir.glob(".*.tmp"))


def test_report_plots_are_real_pictures(full_run):
    names = sorted(p.name for p in full_run.plots)
    assert names == ["numeric_scatter.png", "selected_frames.png", "task_scores.png"]
    for path in full_run.plots:
        assert path.parent == full_run.report_dir and path.stat().st_size > 10_000
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] >= 200 and image.shape[1] >= 600
        assert image.std() > 10, f"{path.name} is nearly blank"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{path.name} has almost no content"
    # the contact sheet shows the rendered room: many distinct colours from the scene's objects
    sheet = np.asarray(Image.open(full_run.report_dir / "selected_frames.png").convert("RGB"))
    assert len(np.unique(sheet.reshape(-1, 3), axis=0)) > 1000
    assert "task_scores.png" in (full_run.report_dir / "index.md").read_text()


def test_interrupted_run_resumes_to_the_same_results(scene, qa, full_run, tmp_path):
    out = tmp_path / "out"
    stop_after = 5
    seen = []

    def crash(record):
        seen.append(record["id"])
        if len(seen) == stop_after:
            raise SimulatedCrashError("simulated crash")

    with pytest.raises(SimulatedCrashError):
        evaluate_bag(scene.bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False,
                     on_answer=crash)
    lines = (out / ANSWERS_FILE).read_text().splitlines()
    assert len(lines) == stop_after and not (out / RESULTS_JSON).exists()
    # a crash in the middle of a write leaves a torn last line: it is dropped, not fatal
    with (out / ANSWERS_FILE).open("a") as handle:
        handle.write('{"id": "6", "raw_text": "tor')
    resumed = evaluate_bag(scene.bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False)
    assert resumed.reused == stop_after and resumed.answered_now == len(full_run.rows) - stop_after
    assert _comparable(resumed.rows) == _comparable(full_run.rows)
    assert resumed.summary == pytest.approx(full_run.summary)
    assert len((out / ANSWERS_FILE).read_text().splitlines()) == len(full_run.rows)
    # a third run has nothing left to ask
    again = evaluate_bag(scene.bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False,
                         report=False)
    assert again.answered_now == 0 and _comparable(again.rows) == _comparable(full_run.rows)


def test_batched_questions_answer_like_one_by_one(scene, qa, full_run, tmp_path):
    batched = evaluate_bag(scene.bag, scene.questions, qa, tmp_path / "out", max_frames=MAX_FRAMES,
                           progress=False, report=False, batch_size=8)
    assert _comparable(batched.rows) == _comparable(full_run.rows)
    assert batched.summary == pytest.approx(full_run.summary)


def test_other_settings_do_not_mix_with_cached_answers(scene, qa, full_run):
    with pytest.raises(ValueError, match="different run"):
        evaluate_bag(scene.bag, scene.questions, qa, full_run.out_dir, max_frames=MAX_FRAMES + 1,
                     progress=False)
    with pytest.raises(ValueError, match="selects frames with 'space_aware'"):
        evaluate_bag(scene.bag, scene.questions, qa, full_run.out_dir, max_frames=MAX_FRAMES, progress=False,
                     selector="uniform")


def test_vsibench_jsonl_question_file(scene, qa, full_run, tmp_path):
    rows = json.loads(scene.questions.read_text())
    picked = [r for r in rows if r["question_type"] in ("object_counting", "object_rel_direction_hard")][:3]
    jsonl = tmp_path / "vsibench.jsonl"
    jsonl.write_text("\n".join(json.dumps({k: r[k] for k in ("id", "dataset", "scene_name", "question_type",
                                                               "question", "options", "ground_truth")})
                               for r in picked) + "\n\n")
    questions = load_questions(jsonl)
    assert [q.id for q in questions] == [str(r["id"]) for r in picked]
    assert all(q.options is None or not q.options[0].startswith("A. ") for q in questions)
    result = evaluate_bag(scene.bag, jsonl, qa, tmp_path / "out", max_frames=MAX_FRAMES, progress=False,
                          report=False)
    by_id = {r["id"]: r for r in full_run.rows}
    assert _comparable(result.rows) == _comparable([by_id[str(r["id"])] for r in picked])


@pytest.mark.parametrize(("content", "reason"), [
    ('[{"id": 1, "question": "How many chairs?", "question_type": "object_counting", "ground_truth": "2"},'
     ' {"id": 1, "question": "How many beds?", "question_type": "object_counting", "ground_truth": "1"}]',
     "duplicate question ids"),
    ('[{"id": 1, "question": "Is it nice?", "question_type": "vibes", "ground_truth": "yes"}]',
     "no VSI-Bench score"),
    ('[{"id": 1, "question": "How far?", "question_type": "object_abs_distance", "ground_truth": "far"}]',
     "not a number"),
    ('[{"id": 1, "question": "Which?", "question_type": "route_planning", "options": ["A. left", "B. right"],'
     ' "ground_truth": "up"}]', "neither an option letter"),
    ('[{"id": 1, "question_type": "object_counting", "ground_truth": "2"}]', "missing field"),
    ('{"id": 1, "question": "x"\n', "not valid JSON"),
    ("[]", "no questions"),
])
def test_bad_question_files_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "questions.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=reason):
        load_questions(path)


def _write_bare_mcap(path, scene_model):
    """The scene's frames as a bare .mcap from another writer (mcap-ros2-support), other topic names."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    names = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "geometry_msgs/msg/PoseStamped")
    with path.open("wb") as stream:
        writer = McapRos2Writer(stream)
        schemas = {n: writer.register_msgdef(n, typestore.generate_msgdef(n, ros_version=2)[0])
                   for n in names}
        height, width = scene_model.height, scene_model.width
        for index in range(scene_model.num_frames):
            rgb, depth, _ = scene_model.render(index)
            stamp_ns = int(scene_model.stamps_ns[index])
            header = {"stamp": {"sec": stamp_ns // 10**9, "nanosec": stamp_ns % 10**9}, "frame_id": "optical"}
            writer.write_message("/robot/rgb", schemas[names[0]],
                                 {"header": header, "height": height, "width": width, "encoding": "rgb8",
                                  "is_bigendian": 0, "step": width * 3, "data": rgb.tobytes()},
                                 log_time=stamp_ns)
            writer.write_message("/robot/depth", schemas[names[0]],
                                 {"header": header, "height": height, "width": width, "encoding": "32FC1",
                                  "is_bigendian": 0, "step": width * 4,
                                  "data": depth.astype("<f4").tobytes()}, log_time=stamp_ns)
            projection = np.zeros((3, 4))
            projection[:, :3] = scene_model.intrinsics
            writer.write_message("/robot/info", schemas[names[1]],
                                 {"header": header, "height": height, "width": width,
                                  "distortion_model": "plumb_bob", "d": [0.0] * 5,
                                  "k": scene_model.intrinsics.reshape(9).tolist(),
                                  "r": np.eye(3).reshape(9).tolist(), "p": projection.reshape(12).tolist()},
                                 log_time=stamp_ns)
            translation, quaternion = pose_to_translation_quaternion(scene_model.poses[index])
            position = dict(zip("xyz", translation.tolist(), strict=True))
            orientation = dict(zip("xyzw", quaternion.tolist(), strict=True))
            writer.write_message("/robot/pose", schemas[names[2]],
                                 {"header": {**header, "frame_id": "map"},
                                  "pose": {"position": position, "orientation": orientation}},
                                 log_time=stamp_ns)
        writer.finish()
    return path


def test_bare_mcap_of_another_writer_with_other_topics(scene, checkpoint, full_run, tmp_path, capsys):
    bag = _write_bare_mcap(tmp_path / "robot.mcap", make_scene(seed=0, num_frames=NUM_FRAMES))
    out = tmp_path / "out"
    assert main(["--bag", str(bag), "--questions", str(scene.questions), "--model", str(checkpoint),
                 "--out", str(out), "--max-frames", str(MAX_FRAMES), "--max-new-tokens", str(MAX_NEW_TOKENS),
                 "--image-topic", "/robot/rgb", "--depth-topic", "/robot/depth",
                 "--info-topic", "/robot/info", "--pose-topic", "/robot/pose",
                 "--no-progress", "--no-report"]) == 0
    assert "overall" in capsys.readouterr().out
    payload = _strict_json(out / RESULTS_JSON)
    assert payload["frames_read"] == NUM_FRAMES and payload["complete"] is True
    # the same frames, whoever wrote them: the same selection, answers and scores as the rosbags-written bag
    assert _comparable(payload["rows"]) == _comparable(full_run.rows)


def _truncated_copy(bag, destination, fraction=0.6):
    shutil.copytree(bag, destination)
    storage = next(destination.glob("*.mcap"))
    os.truncate(storage, int(storage.stat().st_size * fraction))
    return destination


def test_damaged_bag_stops_clearly_and_keeps_earlier_answers(scene, qa, tmp_path):
    bag = tmp_path / "bag"
    shutil.copytree(scene.bag, bag)
    out = tmp_path / "out"
    first = evaluate_bag(bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False, limit=3,
                         report=False)
    assert first.answered_now == 3
    kept = (out / ANSWERS_FILE).read_bytes()
    shutil.rmtree(bag)
    _truncated_copy(scene.bag, bag)
    damaged_text = r"damaged or truncated .*; \d+ frame\(s\) were read.*--allow-truncated"
    with pytest.raises(BagReadError, match=damaged_text):
        evaluate_bag(bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False)
    assert (out / ANSWERS_FILE).read_bytes() == kept
    # evaluating the readable part is a different run: it refuses to mix with the full bag's answers ...
    with pytest.raises(ValueError, match="different run"):
        evaluate_bag(bag, scene.questions, qa, out, max_frames=MAX_FRAMES, progress=False,
                     allow_truncated=True)
    assert (out / ANSWERS_FILE).read_bytes() == kept
    # ... and runs in its own folder, saying the bag was damaged
    partial = evaluate_bag(bag, scene.questions, qa, tmp_path / "partial", max_frames=MAX_FRAMES,
                           progress=False, allow_truncated=True, report=False)
    assert 0 < partial.frames_read < NUM_FRAMES and "truncated" in partial.bag_error
    assert all(r["error"] == "" for r in partial.rows)
    payload = _strict_json(partial.results_json)
    assert payload["bag_error"] == partial.bag_error and payload["frames_read"] == partial.frames_read


def test_cli_limit_resume_and_damaged_bag_exit_codes(scene, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--bag", str(scene.bag), "--questions", str(scene.questions), "--model", str(checkpoint),
            "--out", str(out), "--max-frames", str(MAX_FRAMES), "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--no-progress", "--no-report"]
    assert main([*base, "--limit", "4"]) == 0
    printed = capsys.readouterr().out
    assert "question(s) not answered yet" in printed and "overall" in printed
    partial = _strict_json(out / RESULTS_JSON)
    assert partial["complete"] is False and partial["unanswered"] == len(partial["rows"]) - 4
    assert sum(partial["task_counts"].values()) == 4  # the scores so far cover the answered questions
    assert main(base) == 0
    printed = capsys.readouterr().out
    assert "not answered yet" not in printed and str(out / RESULTS_JSON) in printed
    payload = _strict_json(out / RESULTS_JSON)
    assert payload["complete"] is True and payload["reused"] == 4
    table_overall = next(line for line in printed.splitlines() if line.startswith("overall"))
    assert math.isclose(float(table_overall.split()[-2]), round(100 * payload["summary"]["overall"], 1))
    lenient_overall = round(100 * payload["summary_lenient"]["overall"], 1)
    assert math.isclose(float(table_overall.split()[-1]), lenient_overall)

    damaged = _truncated_copy(scene.bag, tmp_path / "damaged")
    assert main([*base[:1], str(damaged), *base[2:]]) == 3
    error = capsys.readouterr().err
    assert "damaged bag" in error and "answers computed so far are kept" in error
    assert main(["--bag", str(tmp_path / "nope"), "--model", str(checkpoint)]) == 2
    assert main([*base[:4], "--model", str(tmp_path / "no_model"), *base[6:]]) == 2
    assert "no Spatial-MLLM checkpoint" in capsys.readouterr().err


def test_numeric_scatter_plots_parsed_answers_in_task_units(tmp_path):
    from spatial_mllm_ros.bag.report import _answer_in_task_units, plot_numeric_scatter

    def row(task, raw, truth, error=""):
        return {"question_type": task, "raw_text": raw, "ground_truth": truth, "options": None,
                "error": error}

    rows = [row("object_size_estimation", "1.2 m", "100"), row("object_size_estimation", "85", "90"),
            row("object_abs_distance", "about 2.5 meters", "3.0"), row("object_abs_distance", "far", "1.0"),
            row("object_counting", "3", "4", error="inference failed")]
    assert _answer_in_task_units(rows[0]) == pytest.approx(120.0)  # metres -> the task's centimetres
    assert _answer_in_task_units(rows[1]) == pytest.approx(85.0)  # a bare number is read in task units
    assert _answer_in_task_units(rows[2]) == pytest.approx(2.5)
    assert math.isnan(_answer_in_task_units(rows[3])) and math.isnan(_answer_in_task_units(rows[4]))
    path = plot_numeric_scatter(tmp_path / "scatter.png", rows)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] >= 3 * 400 and image.std() > 10  # one panel per numeric task present
    assert plot_numeric_scatter(tmp_path / "none.png", [row("route_planning", "A", "A")]) is None


def test_uniform_sampler_spreads_candidates_over_the_whole_stream():
    sampler = UniformSampler(8)
    for index in range(24):
        sampler.add(index)
    # 17 kept > 16: stride 2 keeps 0, 2, ..., 22; eight of those twelve picked at linspace(0, 11, 8)
    assert sampler.result() == [0, 4, 6, 10, 12, 16, 18, 22]
    short = UniformSampler(8)
    for index in range(5):
        short.add(index)
    assert short.result() == [0, 1, 2, 3, 4]
    long = UniformSampler(128)
    for index in range(10_000):
        long.add(index)
    picked = long.result()
    assert len(picked) == 128 and picked[0] == 0 and picked[-1] >= 10_000 - 64
    assert max(np.diff(picked)) <= 2 * 10_000 / 128


def test_whole_recording_candidates_versus_the_sliding_window(scene):
    stamps = [f.stamp for f in read_frames(scene.bag)]
    whole, _, _ = read_bag_frames(scene.bag, window="whole", candidates=8)
    sliding, _, counters = read_bag_frames(scene.bag, window="sliding", buffer_max_frames=8)
    assert [f.stamp for f in sliding] == stamps[-8:] and counters["evicted_image_capacity"] == NUM_FRAMES - 8
    assert [f.stamp for f in whole] == [stamps[i] for i in (0, 4, 6, 10, 12, 16, 18, 22)]


def test_both_layouts_of_one_scene_select_the_same_frames(qa, tmp_path):
    robot = write_scene(tmp_path / "robot", seed=0, num_frames=NUM_FRAMES, depth_encoding="16UC1",
                        storage="mcap", max_bag_duration_s=0.5)
    posed = write_scene(tmp_path / "posed", seed=0, num_frames=NUM_FRAMES, depth_encoding="16UC1",
                        pose_source="pose_topic")
    runs = [evaluate_bag(paths.bag, paths.questions, qa, tmp_path / name, max_frames=MAX_FRAMES,
                         progress=False, report=False, limit=3)
            for name, paths in (("robot_out", robot), ("posed_out", posed))]
    records = [load_answer_log(run.answers_jsonl) for run in runs]
    assert len(records[0]) == len(records[1]) == 3
    for qid, record in records[0].items():
        other = records[1][qid]
        assert record["selection_method"] == other["selection_method"] == "space_aware"
        assert record["selection_indices"] == other["selection_indices"]
        assert record["frame_stamps"] == other["frame_stamps"] and record["raw_text"] == other["raw_text"]


def test_cli_checks_the_bag_before_loading_the_model(scene, tmp_path, capsys):
    base = ["--questions", str(scene.questions), "--model", str(tmp_path / "never_loaded"), "--no-progress",
            "--no-report", "--out", str(tmp_path / "out")]
    (tmp_path / "empty").mkdir()
    assert main(["--bag", str(tmp_path / "empty"), *base]) == 2
    assert "holds no metadata.yaml and no .mcap/.db3 storage files" in capsys.readouterr().err
    assert main(["--bag", str(scene.bag), "--image-topic", "/nope", *base]) == 2
    assert "image topic '/nope' is not in" in capsys.readouterr().err
    assert main(["--bag", str(scene.bag), "--pose-topic", "/camera/camera/color/camera_info", *base]) == 2
    assert "carries sensor_msgs/msg/CameraInfo" in capsys.readouterr().err
    sqlite_scene = write_scene(tmp_path / "sq", seed=2, width=32, height=24, num_frames=4)
    storage = sqlite_scene.bag / "bag.db3"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    assert main(["--bag", str(sqlite_scene.bag), *base]) == 3
    error = capsys.readouterr().err
    assert "damaged bag" in error and "bag.db3: cannot be opened" in error
    assert "--allow-truncated" not in error and "answers computed so far" not in error


def test_cli_reads_a_recording_without_metadata_and_tf_as_pose_topic(scene, checkpoint, tmp_path, capsys):
    bag = tmp_path / "killed"
    shutil.copytree(scene.bag, bag)
    (bag / "metadata.yaml").unlink()
    assert main(["--bag", str(bag), "--questions", str(scene.questions), "--model", str(checkpoint),
                 "--out", str(tmp_path / "out"), "--max-frames", str(MAX_FRAMES), "--max-new-tokens",
                 str(MAX_NEW_TOKENS), "--no-progress", "--no-report", "--limit", "1",
                 "--pose-topic", "/tf"]) == 0
    error = capsys.readouterr().err
    assert "poses tf (/tf+/tf_static)" in error
    record = next(iter(load_answer_log(tmp_path / "out" / ANSWERS_FILE).values()))
    assert record["selection_method"] == "space_aware" and len(record["frame_stamps"]) == MAX_FRAMES


def test_cli_unsupported_encoding_is_bad_input(scene, checkpoint, tmp_path, capsys):
    from test_bag_reader import write_yuv_mcap

    bag = write_yuv_mcap(tmp_path / "yuv.mcap")
    assert main(["--bag", str(bag), "--questions", str(scene.questions), "--model", str(checkpoint),
                 "--out", str(tmp_path / "out"), "--no-progress", "--no-report"]) == 2
    error = capsys.readouterr().err
    assert "unsupported colour encoding 'yuv422'" in error and "check the topic names" not in error
