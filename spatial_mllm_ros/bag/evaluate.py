# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Offline VSI-Bench evaluation of spatial answers over a rosbag2 recording.

Engineers judge a spatial model by replaying recordings and scoring its answers against ground
truth. This module reads a bag into the same frame buffer the ROS node uses, asks every question
of a VSI-Bench-style question file through the engine, scores the answers with the VSI-Bench
metrics and writes results (JSON + CSV, atomically) and a report folder with plots.

The run is resumable: each answer is appended to ``answers.jsonl`` (flushed and fsynced) as soon
as it exists, and a rerun into the same output folder skips the questions already answered.

Which frames the model sees follows VSI-Bench's protocol by default (``window="whole"``): candidates
are sampled uniformly across the whole recording, up to 128 as upstream samples a video, and the
engine's selector picks ``max_frames`` of them. ``window="sliding"`` evaluates what the ROS node would
see after a replay instead: the node's ``FrameBuffer`` bounds, so a bag longer than the buffer is
evaluated on its last frames (the ROS test ``test_ros_replay_eval`` checks that a replay through the
node gives the same answers). Either way the frames pass through the node's ``FrameBuffer`` type and
questions are asked one by one like the node does (``batch_size`` batches them).

A damaged recording stops the run with :class:`~spatial_mllm_ros.bag.reader.BagReadError` (after
saying how many frames were readable); answers already in the output folder are kept untouched.
``allow_truncated=True`` (CLI ``--allow-truncated``) instead evaluates on every readable frame (a
truncated last file's frames, the intact split files around a damaged one) and records the reader's
error in ``results.json`` (``bag_error``). Exit codes of the CLI: 0 done, 2 bad input (paths, topics,
question files), 3 damaged data, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatial_mllm_ros.bag.reader import AUTO, BagReadError, probe_bag, read_frames
from spatial_mllm_ros.core.atomic import json_safe, write_json_atomic, write_text_atomic
from spatial_mllm_ros.core.buffer import FrameBuffer
from spatial_mllm_ros.core.metrics import (
    aggregate_vsibench,
    ground_truth_letter,
    official_score,
    score_question,
)
from spatial_mllm_ros.core.prompts import (
    MULTIPLE_CHOICE_TASK_TYPES,
    OPTION_LETTERS,
    TASK_TYPES,
    infer_task_type,
    split_option,
)

ANSWERS_FILE = "answers.jsonl"
RUN_CONFIG_FILE = "run_config.json"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_DIR = "report"
NOT_ANSWERED = "not answered"  # the error of a question a stopped run did not reach yet



@dataclass(frozen=True)
class Question:
    """One row of a VSI-Bench-style question file."""

    id: str
    question: str
    question_type: str
    ground_truth: str
    options: list[str] | None = None
    dataset: str = ""
    scene_name: str = ""


@dataclass
class EvalResult:
    """What :func:`evaluate_bag` produced (all rows, the summary and where the files are)."""

    rows: list[dict[str, Any]]
    summary: dict[str, float]  # official VSI-Bench scores (0..1)
    task_counts: dict[str, int]
    out_dir: Path
    results_json: Path
    results_csv: Path
    answers_jsonl: Path
    report_dir: Path | None
    plots: list[Path] = field(default_factory=list)
    frames_read: int = 0
    bag_error: str = ""
    answered_now: int = 0
    reused: int = 0
    read_s: float = 0.0
    answer_s: float = 0.0
    summary_lenient: dict[str, float] = field(default_factory=dict)  # answers read by parse_answer

    @property
    def overall(self) -> float:
        """The VSI-Bench overall score (mean of the task scores)."""
        return float(self.summary.get("overall", float("nan")))


# ----------------------------------------------------------------------------------------------
# question files


def strip_option_letter(options: list[str]) -> list[str]:
    """Drop "A. " style prefixes when every option carries its own letter in order (VSI-Bench rows).

    The service and the engine take options without letters. Options that merely start with a
    letter and a dot, such as ``["B. Smith's chair", "the desk"]``, are kept as they are.
    """
    parts = [split_option(option) for option in options]
    lettered = all(letter == OPTION_LETTERS[i] for i, (letter, _) in enumerate(parts[:len(OPTION_LETTERS)]))
    if 0 < len(options) <= len(OPTION_LETTERS) and lettered:
        return [text for _, text in parts]
    return list(options)


def _question_from_row(row: Any, where: str) -> Question:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object with id/question/question_type/ground_truth")
    missing = [key for key in ("id", "question", "ground_truth") if row.get(key) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    options = row.get("options")
    if options is not None:
        if isinstance(options, str) or not isinstance(options, (list, tuple)):
            raise ValueError(f"{where}: options must be a list of strings or null")
        options = strip_option_letter([str(o) for o in options]) or None
    question_type = row.get("question_type") or infer_task_type(str(row["question"]), options)
    if question_type not in TASK_TYPES:
        raise ValueError(f"{where}: question_type {question_type!r} has no VSI-Bench score; "
                         f"expected one of {', '.join(TASK_TYPES)}")
    ground_truth = row["ground_truth"]
    if isinstance(ground_truth, float) and ground_truth.is_integer():
        ground_truth = int(ground_truth)
    try:  # scoring an empty answer checks that the ground truth fits the task (number / option)
        score_question(question_type, "", str(ground_truth), options)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return Question(id=str(row["id"]), question=str(row["question"]), question_type=str(question_type),
                    ground_truth=str(ground_truth), options=options, dataset=str(row.get("dataset") or ""),
                    scene_name=str(row.get("scene_name") or ""))


def load_questions(path: str | Path) -> list[Question]:
    """Read a question file: a JSON list (or ``{"questions": [...]}``) or JSON Lines, VSI-Bench rows."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"question file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    rows: list[tuple[Any, str]]
    if stripped.startswith("[") or (stripped.startswith("{") and path.suffix == ".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if isinstance(data, dict):
            data = data.get("questions")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of question rows")
        rows = [(row, f"{path} row {i}") for i, row in enumerate(data)]
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((json.loads(line), f"{path} line {number}"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number}: not valid JSON ({error})") from error
    questions = [_question_from_row(row, where) for row, where in rows]
    duplicates = [qid for qid, n in Counter(q.id for q in questions).items() if n > 1]
    if duplicates:
        raise ValueError(f"{path}: duplicate question ids {duplicates[:5]}")
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


# ----------------------------------------------------------------------------------------------
# files: atomic writes, the appended answer log


def load_answer_log(path: Path) -> dict[str, dict[str, Any]]:
    """Answers already in the log, last record per question id; a torn last line is dropped."""
    if not path.is_file():
        return {}
    records: dict[str, dict[str, Any]] = {}
    good_lines: list[str] = []
    damaged = False
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
            if not line.endswith("\n") or not isinstance(record, dict) or "id" not in record:
                raise ValueError("incomplete record")
        except ValueError:
            damaged = line.strip() != "" or damaged
            continue
        records[str(record["id"])] = record
        good_lines.append(line)
    if damaged:  # rewrite without the torn record so that later appends start on a fresh line
        write_text_atomic(path, "".join(good_lines))
    return records


class AnswerLog:
    """Append-only JSON Lines file; every record is flushed and fsynced before the call returns."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, record: dict[str, Any]) -> None:
        """Persist one record durably."""
        self._handle.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


# ----------------------------------------------------------------------------------------------
# frames


# The node's buffer defaults (ros/qa_node.py parameters buffer.*): sliding-window runs keep the same frames.
NODE_BUFFER_MAX_FRAMES = 300
NODE_BUFFER_MAX_MEGABYTES = 1024.0
# VSI-Bench's protocol: up to 128 frames sampled uniformly across the whole video are the candidates.
UPSTREAM_CANDIDATES = 128
WINDOWS = ("whole", "sliding")


class UniformSampler:
    """Keeps frames evenly spread over a stream of unknown length, at most ``2 * limit`` in memory.

    Every ``stride``-th frame is kept; when more than ``2 * limit`` are held the stride doubles and
    every other kept frame is dropped, so the kept frames always cover the whole stream so far.
    :meth:`result` returns ``limit`` of them picked uniformly (all of them when fewer).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the number of candidates must be >= 1, got {limit}")
        self.limit = limit
        self.stride = 1
        self.seen = 0
        self._kept: list = []

    def add(self, item) -> None:
        """Offer the next item of the stream."""
        if self.seen % self.stride == 0:
            self._kept.append(item)
            if len(self._kept) > 2 * self.limit:
                self._kept = self._kept[::2]
                self.stride *= 2
        self.seen += 1

    def result(self) -> list:
        """Up to ``limit`` kept items, evenly spread over the stream, in stream order."""
        if len(self._kept) <= self.limit:
            return list(self._kept)
        import numpy as np

        picks = np.unique(np.round(np.linspace(0, len(self._kept) - 1, self.limit)).astype(int))
        return [self._kept[i] for i in picks]


def read_bag_frames(bag_path: str | Path, *, buffer_max_frames: int = NODE_BUFFER_MAX_FRAMES,
                    buffer_max_megabytes: float = NODE_BUFFER_MAX_MEGABYTES, camera_id: str | None = None,
                    allow_truncated: bool = False, window: str = "sliding",
                    candidates: int = UPSTREAM_CANDIDATES, camera: str | None = None,
                    fixed_frame: str | None = None, details: dict | None = None,
                    **topics: str) -> tuple[list, str, dict[str, int]]:
    """Read a bag's frames into a FrameBuffer; return its frames, reader error, counters.

    ``window="sliding"``: the buffer is set up like the node's (a bag longer than
    ``buffer_max_frames`` keeps its last frames, exactly as the node would after a replay).
    ``window="whole"``: up to ``candidates`` frames sampled uniformly across the whole recording.
    The reader error is "" for a sound bag; for a damaged one it is raised as ``BagReadError``
    unless ``allow_truncated``, in which case every readable frame is used and the error returned.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    limit = buffer_max_frames if window == "sliding" else candidates
    buffer = FrameBuffer(max_frames=limit, max_bytes=int(buffer_max_megabytes * 1024 * 1024))
    sampler = UniformSampler(candidates) if window == "whole" else None
    bag_error = ""
    count = 0
    details = {} if details is None else details
    try:
        for frame in read_frames(bag_path, **{k: v for k, v in topics.items() if v}, camera=camera,
                                 fixed_frame=fixed_frame, details=details):
            if sampler is None:
                buffer.add_frame(frame)  # image, depth, K and pose into the node's buffer type
            else:
                sampler.add(frame)
            count += 1
    except BagReadError as error:
        if not allow_truncated or count == 0:
            suggestion = "; --allow-truncated evaluates on them" if count and not allow_truncated else ""
            damaged = BagReadError(f"{error}{suggestion}")
            damaged.frames_read = count
            raise damaged from error
        bag_error = str(error)
    for frame in sampler.result() if sampler is not None else []:
        buffer.add_frame(frame)
    frames = buffer.frames(camera_id=camera_id)
    if not frames:
        choice = details.get("topics")
        raise ValueError(f"no frames read from {bag_path}" + (f" ({choice.describe()})" if choice else "")
                         + (f" of camera_id {camera_id!r}" if camera_id and count else ""))
    return frames, bag_error, buffer.counters


def _frames_fingerprint(frames: list) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(f"{frame.camera_id}:{frame.stamp:.9f};".encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# asking and scoring


def _answer_record(question: Question, answer: Any, fingerprint: str) -> dict[str, Any]:
    selection = getattr(answer, "selection", None)
    return {
        "id": question.id,
        "question_type": question.question_type,
        "question": question.question,
        "options": question.options,
        "ground_truth": question.ground_truth,
        "task_type": answer.task_type,
        "raw_text": answer.raw_text,
        "kind": answer.kind,
        "choice_letter": answer.choice_letter,
        "value": float(answer.value),
        "unit": answer.unit,
        "confidence": float(answer.confidence),
        "frame_stamps": [float(s) for s in answer.frame_stamps],
        "selection_method": getattr(selection, "method", ""),
        "selection_indices": [int(i) for i in getattr(selection, "indices", [])],
        "coverage": float(getattr(selection, "coverage", float("nan"))),
        "selection_ms": float(answer.selection_ms),
        "encode_ms": float(answer.encode_ms),
        "generate_ms": float(answer.generate_ms),
        "model_id": answer.model_id,
        "backend": answer.backend,
        "error": answer.error,
        "fingerprint": fingerprint,
    }


def _is_reusable(record: dict[str, Any] | None, question: Question) -> bool:
    """An earlier answer counts when it succeeded for the same question text and options."""
    return (record is not None and not record.get("error")
            and record.get("question") == question.question
            and (record.get("options") or None) == (question.options or None))


def _score_rows(questions: list[Question], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Score every question against the CURRENT ground truth (so fixing a question file rescores)."""
    rows = []
    for question in questions:
        record = records.get(question.id, {})
        raw_text = record.get("raw_text", "")
        failed = not record or bool(record.get("error"))
        score = 0.0 if failed else _official(question, raw_text)
        lenient = 0.0 if failed else float(score_question(question.question_type, raw_text,
                                                              question.ground_truth, question.options))
        rows.append({
            "id": question.id,
            "dataset": question.dataset,
            "scene_name": question.scene_name,
            "question_type": question.question_type,
            "question": question.question,
            "options": question.options,
            "ground_truth": question.ground_truth,
            "raw_text": raw_text,
            "kind": record.get("kind", "none"),
            "choice_letter": record.get("choice_letter", ""),
            "value": record.get("value"),
            "unit": record.get("unit", ""),
            "score": score,
            "score_lenient": lenient,
            "error": record.get("error", NOT_ANSWERED) if failed else "",
            "num_frames": len(record.get("frame_stamps", [])),
            "frame_stamps": record.get("frame_stamps", []),
            "selection_method": record.get("selection_method", ""),
            "coverage": record.get("coverage"),
            "selection_ms": record.get("selection_ms"),
            "encode_ms": record.get("encode_ms"),
            "generate_ms": record.get("generate_ms"),
        })
    return rows


def _official(question: Question, raw_text: str) -> float:
    """The official VSI-Bench score; a multiple-choice truth given as option text is its letter first."""
    truth = question.ground_truth
    if question.question_type in MULTIPLE_CHOICE_TASK_TYPES:
        truth = ground_truth_letter(truth, question.options)
    return official_score(question.question_type, raw_text, truth)


def summarize(rows: list[dict[str, Any]],
              score_key: str = "score") -> tuple[dict[str, float], dict[str, int]]:
    """VSI-Bench aggregate (per task + overall) and the number of questions per reported task.

    ``score_key`` "score" gives the official scores, "score_lenient" the lenient ones. Questions not
    asked yet (an interrupted or ``limit``-ed run) are left out, so a partial run shows the scores so
    far; failed answers count as 0, as in VSI-Bench.
    """
    asked = [r for r in rows if r.get("error") != NOT_ANSWERED]
    summary = aggregate_vsibench([{"question_type": r["question_type"], "score": r[score_key]}
                                  for r in asked])
    counts = Counter(_reported_task(r["question_type"]) for r in asked)
    return {key: float(value) for key, value in summary.items()}, dict(counts)


def _reported_task(question_type: str) -> str:
    return "object_rel_direction" if question_type.startswith("object_rel_direction") else question_type


def format_table(summary: dict[str, float], counts: dict[str, int],
                 lenient: dict[str, float] | None = None) -> str:
    """Per-task table in VSI-Bench order, overall last: official scores, then the lenient column."""
    tasks = [task for task in summary if task != "overall"] + ["overall"]
    width = max(len(t) for t in tasks)

    def shown(value: float) -> str:
        return "     nan" if math.isnan(value) else f"{100 * value:8.1f}"

    header = f"{'task'.ljust(width)}  {'n':>4}  official" + ("   lenient" if lenient is not None else "")
    lines = [header, "-" * len(header)]
    for task in tasks:
        n = sum(counts.values()) if task == "overall" else counts.get(task, 0)
        line = f"{task.ljust(width)}  {n:>4}  {shown(summary.get(task, float('nan')))}"
        if lenient is not None:
            line += f"  {shown(lenient.get(task, float('nan')))}"
        lines.append(line)
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["id", "dataset", "scene_name", "question_type", "question", "options", "ground_truth",
               "raw_text", "kind", "choice_letter", "value", "unit", "score", "score_lenient", "error",
               "num_frames", "selection_method", "coverage", "selection_ms", "encode_ms", "generate_ms",
               "frame_stamps"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["options"] = " | ".join(row["options"] or [])
        flat["frame_stamps"] = " ".join(f"{s:.6f}" for s in row["frame_stamps"])
        for key in ("value", "coverage", "selection_ms", "encode_ms", "generate_ms"):
            value = flat.get(key)
            flat[key] = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        writer.writerow(flat)
    write_text_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# the evaluation


def evaluate_bag(bag_path: str | Path, questions_path: str | Path, qa: Any, out_dir: str | Path,
                 max_frames: int = 16, selector: str = "space_aware", progress: bool = True, *,
                 report: bool = True, fresh: bool = False, allow_truncated: bool = False,
                 limit: int | None = None, on_answer: Callable[[dict[str, Any]], None] | None = None,
                 batch_size: int = 1,
                 buffer_max_frames: int = NODE_BUFFER_MAX_FRAMES,
                 buffer_max_megabytes: float = NODE_BUFFER_MAX_MEGABYTES, camera_id: str | None = None,
                 topics: dict[str, str] | None = None, log: Callable[[str], None] | None = None,
                 window: str = "whole", candidates: int = UPSTREAM_CANDIDATES, camera: str | None = None,
                 fixed_frame: str | None = None,
                 ) -> EvalResult:
    """Evaluate ``qa`` (an engine ``SpatialQA``) on every question about the frames of one bag.

    ``out_dir`` receives ``answers.jsonl`` (the resumable answer log), ``results.json``,
    ``results.csv`` and ``report/`` (PNG plots). Questions already answered in ``out_dir`` by the
    same configuration are not asked again; ``fresh`` discards them. ``limit`` answers at most that
    many new questions in this call. ``on_answer(record)`` is called after each new answer is on
    disk (an exception raised there stops the run; everything answered so far stays on disk).
    ``batch_size`` > 1 asks that many questions per ``ask_many`` call (one generation batch; faster,
    and on float32 CPU the same texts; 1, the default, asks one by one exactly like the node).
    ``window`` "whole" (default, VSI-Bench's protocol) samples up to ``candidates`` frames uniformly
    across the recording; "sliding" keeps what the node's buffer would (``buffer_max_frames``).
    ``camera``/``fixed_frame``/``topics`` go to the bag reader (topics default to discovery).
    Raises ``BagReadError`` for a damaged bag unless ``allow_truncated``, and ``ValueError`` for
    bad question files or an output folder made by a different configuration.
    """
    log = log or (lambda message: None)
    bag_path = Path(bag_path)
    out_dir = Path(out_dir)
    questions = load_questions(questions_path)
    if max_frames < 1 or batch_size < 1:
        raise ValueError(f"max_frames and batch_size must be >= 1, got {max_frames} and {batch_size}")
    engine_selector = getattr(qa, "selector_name", selector)
    if engine_selector != selector:
        raise ValueError(f"the engine selects frames with {engine_selector!r}, not {selector!r}: "
                         f"build SpatialQA(selector={selector!r})")

    started = time.perf_counter()
    details: dict[str, Any] = {}
    frames, bag_error, counters = read_bag_frames(
        bag_path, buffer_max_frames=buffer_max_frames, buffer_max_megabytes=buffer_max_megabytes,
        camera_id=camera_id, allow_truncated=allow_truncated, window=window, candidates=candidates,
        camera=camera, fixed_frame=fixed_frame, details=details, **(topics or {}))
    read_s = time.perf_counter() - started
    evicted = counters.get("evicted_image_capacity", 0) + counters.get("evicted_image_memory", 0)
    log(f"read {bag_path} in {read_s:.2f} s: {details['topics'].describe()}")
    if window == "whole":
        log(f"{len(frames)} candidate frames sampled uniformly across the recording (up to {candidates})")
    else:
        log(f"{len(frames)} frames in the sliding window"
            + (f": the buffer kept the last {len(frames)} ({evicted} older ones evicted, as the node would)"
               if evicted else ""))
    for warning in details.get("warnings", []):
        log(f"warning: {warning}")
    if bag_error:
        log(f"bag damaged: {bag_error}")

    out_dir.mkdir(parents=True, exist_ok=True)
    answers_path = out_dir / ANSWERS_FILE
    run_config = {
        "bag": str(bag_path.resolve()),
        "frames": len(frames),
        "frames_fingerprint": _frames_fingerprint(frames),
        "camera_id": camera_id,
        "model_id": str(getattr(qa, "model_id", "")),
        "backend": str(getattr(qa, "backend_name", "")),
        "dtype": str(getattr(qa, "dtype", "")),
        "device": str(getattr(qa, "device", "")),
        "max_new_tokens": int(getattr(qa, "max_new_tokens", 0)),
        "max_frames": int(max_frames),
        "selector": selector,
        "window": window,
        "candidates": int(candidates) if window == "whole" else None,
    }
    config_path = out_dir / RUN_CONFIG_FILE
    if fresh:
        answers_path.unlink(missing_ok=True)
    elif config_path.is_file() and answers_path.is_file():
        previous = json.loads(config_path.read_text(encoding="utf-8"))
        changed = {k: (previous.get(k), v) for k, v in run_config.items() if previous.get(k) != v}
        if changed:
            raise ValueError(f"{out_dir} holds answers of a different run ({changed}); "
                             "use another output folder or --fresh to discard them")
    write_json_atomic(config_path, run_config)

    records = load_answer_log(answers_path)
    pending = [q for q in questions if not _is_reusable(records.get(q.id), q)]
    reused = len(questions) - len(pending)
    if reused:
        log(f"resuming: {reused} of {len(questions)} question(s) already answered in {answers_path}")
    if limit is not None:
        pending = pending[:max(0, limit)]

    answer_started = time.perf_counter()
    answered_now = 0
    answer_log = AnswerLog(answers_path)
    try:
        bar = _progress_bar(total=len(questions), initial=reused, enabled=progress)
        try:
            for start in range(0, len(pending), batch_size):
                batch = pending[start:start + batch_size]
                for question, answer in zip(batch, _ask_batch(qa, frames, batch, max_frames), strict=True):
                    record = _answer_record(question, answer, run_config["frames_fingerprint"])
                    answer_log.append(record)
                    records[question.id] = record
                    answered_now += 1
                    bar.update(1)
                    if on_answer is not None:
                        on_answer(record)
        finally:
            bar.close()
    finally:
        answer_log.close()
    answer_s = time.perf_counter() - answer_started

    rows = _score_rows(questions, records)
    summary, counts = summarize(rows)
    summary_lenient, _ = summarize(rows, "score_lenient")
    result = EvalResult(rows=rows, summary=summary, summary_lenient=summary_lenient, task_counts=counts,
                        out_dir=out_dir,
                        results_json=out_dir / RESULTS_JSON, results_csv=out_dir / RESULTS_CSV,
                        answers_jsonl=answers_path, report_dir=None, frames_read=len(frames),
                        bag_error=bag_error, answered_now=answered_now, reused=reused,
                        read_s=read_s, answer_s=answer_s)
    unanswered = sum(1 for r in rows if r["error"] == NOT_ANSWERED)
    payload = {
        "summary": summary,
        "summary_lenient": summary_lenient,
        "scoring": {"summary": "official VSI-Bench rules (first token, float MRA)",
                    "summary_lenient": "answers read by parse_answer (letters in sentences, units "
                                       "converted)"},
        "task_counts": counts,
        "questions": len(rows),
        "unanswered": unanswered,
        "complete": unanswered == 0,
        "config": run_config,
        "bag_error": bag_error,
        "frames_read": len(frames),
        "topics": details["topics"].describe(),
        "buffer_counters": counters,
        "read_s": read_s,
        "answer_s": answer_s,
        "answered_now": answered_now,
        "reused": reused,
        "plots": [],
        "rows": rows,
    }
    write_json_atomic(result.results_json, payload)  # the results are safe before any plotting
    _write_csv(result.results_csv, rows)
    if report:
        from spatial_mllm_ros.bag.report import write_report

        result.report_dir = out_dir / REPORT_DIR
        result.plots = write_report(result.report_dir, rows, summary, counts, frames)
        payload["plots"] = [str(p.relative_to(out_dir)) for p in result.plots]
        write_json_atomic(result.results_json, payload)
    return result


def _ask_batch(qa: Any, frames: list, batch: list[Question], max_frames: int) -> list:
    if len(batch) == 1:
        question = batch[0]
        return [qa.ask(frames, question.question, options=question.options, task_type=question.question_type,
                       max_frames=max_frames, query_id=question.id)]
    return qa.ask_many(frames, [{"question": q.question, "options": q.options, "task_type": q.question_type,
                                 "query_id": q.id} for q in batch], max_frames=max_frames)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="questions", unit="q", file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------
# command line


def _default_questions(bag: Path) -> Path | None:
    for candidate in (bag / "questions.json", bag.parent / "questions.json"):
        if candidate.is_file():
            return candidate
    return None


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``spatial-mllm-ros eval``."""
    parser = argparse.ArgumentParser(
        prog="spatial-mllm-ros eval",
        description="Evaluate spatial answers over a rosbag2 recording with VSI-Bench metrics.")
    parser.add_argument("--bag", required=True, help="rosbag2 directory or bare .mcap file")
    parser.add_argument("--questions", help="VSI-Bench-style question file (JSON list or JSONL); "
                                            "default: questions.json in or next to the bag")
    parser.add_argument("--model", required=True, help="Spatial-MLLM checkpoint directory")
    parser.add_argument("--out", help="output folder (default: eval_<bag name> in the current folder)")
    parser.add_argument("--max-frames", type=int, default=16, help="frames shown to the model (default 16)")
    parser.add_argument("--selector", default="space_aware",
                        help="frame selector: uniform, space_aware (default), space_aware_incremental, "
                             "space_aware_points")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--window", choices=WINDOWS, default="whole",
                        help="whole (default, VSI-Bench's protocol): candidates sampled uniformly across "
                             "the recording; sliding: the node's buffer after a replay (the last "
                             "--buffer-frames)")
    parser.add_argument("--candidates", type=int, default=UPSTREAM_CANDIDATES,
                        help=f"candidates of --window whole (default {UPSTREAM_CANDIDATES})")
    parser.add_argument("--buffer-frames", type=int, default=NODE_BUFFER_MAX_FRAMES,
                        help="with --window sliding: frames the buffer keeps, as the node's "
                             f"buffer.max_frames (default {NODE_BUFFER_MAX_FRAMES})")
    parser.add_argument("--buffer-megabytes", type=float, default=NODE_BUFFER_MAX_MEGABYTES,
                        help=f"image memory bound of the buffer (default {NODE_BUFFER_MAX_MEGABYTES:g})")
    parser.add_argument("--camera-id", help="evaluate one camera's frames (default: all)")
    parser.add_argument("--camera", help="camera namespace when the recording holds several cameras")
    parser.add_argument("--image-topic", help="colour topic (default: discovered)")
    parser.add_argument("--depth-topic", help="depth topic (default: discovered, aligned to colour first)")
    parser.add_argument("--info-topic", help="camera_info topic (default: the colour stream's)")
    parser.add_argument("--pose-topic", help="pose topic, or /tf (default: tf when recorded, else the pose "
                                             "topic)")
    parser.add_argument("--fixed-frame", help="tf frame the poses are expressed in (default map, else odom)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="questions per generation batch (default 1: one by one, like the node)")
    parser.add_argument("--limit", type=int, help="answer at most N new questions, then stop")
    parser.add_argument("--fresh", action="store_true", help="discard answers already in --out")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="evaluate a damaged bag on the frames readable before the damage")
    parser.add_argument("--no-report", action="store_true", help="skip the PNG report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``spatial-mllm-ros eval``: exit 0 when done, 2 for bad input, 3 for a damaged bag."""
    args = build_parser().parse_args(argv)
    bag = Path(args.bag)
    if not bag.exists():
        print(f"eval: bag {bag} does not exist", file=sys.stderr)
        return 2
    topics = {"image_topic": args.image_topic, "depth_topic": args.depth_topic,
              "info_topic": args.info_topic, "pose_topic": args.pose_topic}
    try:  # the bag's topics are checked before anything heavy happens
        choice = probe_bag(bag, **{k: v or AUTO for k, v in topics.items()}, camera=args.camera)
    except BagReadError as error:
        print(f"eval: damaged bag: {error}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    print(f"eval: reading {choice.describe()}", file=sys.stderr)
    for note in choice.notes:
        print(f"eval: note: {note}", file=sys.stderr)
    questions = Path(args.questions) if args.questions else _default_questions(bag)
    if questions is None:
        print(f"eval: no --questions given and no questions.json in or next to {bag}", file=sys.stderr)
        return 2
    name = bag.resolve().parent.name if bag.stem == "bag" else bag.stem  # make-scene writes SCENE/bag
    out_dir = Path(args.out) if args.out else Path.cwd() / f"eval_{name}"
    try:  # a bad question file fails before the model is loaded
        load_questions(questions)
        from spatial_mllm_ros.engine import SpatialQA

        qa = SpatialQA(args.model, backend=args.backend, device=args.device, dtype=args.dtype,
                       selector=args.selector, max_frames=args.max_frames,
                       max_new_tokens=args.max_new_tokens)
    except (ValueError, FileNotFoundError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    try:
        result = evaluate_bag(bag, questions, qa, out_dir, max_frames=args.max_frames, selector=args.selector,
                              progress=not args.no_progress, report=not args.no_report, fresh=args.fresh,
                              allow_truncated=args.allow_truncated, limit=args.limit,
                              batch_size=args.batch_size,
                              buffer_max_frames=args.buffer_frames,
                              buffer_max_megabytes=args.buffer_megabytes, camera_id=args.camera_id,
                              topics={k: v for k, v in topics.items() if v},
                              log=lambda message: print(message, file=sys.stderr), window=args.window,
                              candidates=args.candidates, camera=args.camera, fixed_frame=args.fixed_frame)
    except BagReadError as error:
        kept = out_dir / ANSWERS_FILE
        print(f"eval: damaged bag: {error}" + (f"\nanswers computed so far are kept in {kept}"
                                               if kept.is_file() and kept.stat().st_size else ""),
              file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\neval: interrupted; the answers so far are in {out_dir / ANSWERS_FILE}: "
              "rerun the same command to continue", file=sys.stderr)
        return 130
    finally:
        qa.close()
    print(format_table(result.summary, result.task_counts, result.summary_lenient))
    if result.bag_error:
        print(f"note: bag damaged, evaluated on the first {result.frames_read} frames ({result.bag_error})")
    missing = sum(1 for r in result.rows if r["error"] == NOT_ANSWERED)
    if missing:
        print(f"{missing} question(s) not answered yet: rerun the same command to continue")
    print(f"results: {result.results_json} and {result.results_csv}")
    if result.report_dir is not None:
        print(f"report:  {result.report_dir}")
    return 0

