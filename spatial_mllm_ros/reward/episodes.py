# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Labelling one episode: the unit of work of ``label-rewards``, its Ray workers and the ROS action.

An episode is either one episode of a LeRobot v3 dataset (frames decoded from its video or image
feature) or one rosbag2 recording (frames read from its image topic and, for the output dataset,
encoded into a LeRobot video file as they stream by). Every ``stride``-th frame and the last one
are scored by the :class:`~spatial_mllm_ros.reward.annotator.RewardAnnotator` as they arrive, so
the labeller holds the episode's first frame and one model call's frames, never the episode (the
ROS action, which reports progress against a known total, keeps the scored frames of its window).
:func:`dense_signals` then gives every frame a value: progress is linearly
interpolated between the scored frames that got a valid answer (and held after the last one), and
``next.reward`` at frame t is ``progress[t + 1] - progress[t]`` (0 at the last frame), the reward
of the step from t to t + 1 that LeRobot's ``next.*`` naming means. The result,
:class:`EpisodeLabels`, is plain JSON: it is what a worker sends back and what the output keeps.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_mllm_ros.core.atomic import json_safe
from spatial_mllm_ros.reward.annotator import RewardAnnotator, TrajectoryScores
from spatial_mllm_ros.reward.lerobot import LeRobotSource, image_stats, is_lerobot_root

# The reward node's live topics (a robot's camera namespace); recordings default to discovery (AUTO).
DEFAULT_TOPICS = {"image_topic": "/camera/color/image_raw", "depth_topic": "/camera/depth/image_raw",
                  "info_topic": "/camera/color/camera_info", "pose_topic": "/camera/pose"}
AUTO = "auto"  # the bag reader's value for "discover this stream" (spatial_mllm_ros.bag.reader.AUTO)
LEROBOT, BAG = "lerobot", "bag"


@dataclass(frozen=True)
class LabelOptions:
    """How every episode of a run is scored.

    ``instruction`` None means each LeRobot episode's own task string (bags need one).
    ``camera`` is the LeRobot camera feature to read (None: the first), or for bags the name of
    the video feature written (None: ``observation.images.`` + the image topic's last part).
    ``fps`` is the frame rate of the dataset made from bags (None: estimated from the first bag).
    """

    instruction: str | None = None
    mode: str = "progress"
    target: float | None = None
    stride: int = 1
    camera: str | None = None
    fps: int | None = None
    # in recordings the reader finds the camera streams and the pose source (tf or a pose topic) itself
    image_topic: str = AUTO
    depth_topic: str | None = AUTO
    info_topic: str | None = AUTO
    pose_topic: str | None = AUTO
    start: float | None = None
    end: float | None = None

    def bag_camera(self) -> str:
        """The video feature a bag's camera stream becomes."""
        if self.camera:
            return self.camera
        name = self.image_topic.strip("/").split("/")
        return "observation.images." + (name[-2] if len(name) > 1 and name[-1] == "image_raw" else name[-1])


@dataclass(frozen=True)
class EpisodeUnit:
    """One piece of work: an episode of ``source`` that becomes ``episode_index`` of the output."""

    kind: str
    source: str
    episode_index: int
    episode_id: str


@dataclass
class EpisodeLabels:
    """One labelled episode (all lists are JSON-safe; NaN is stored as null).

    ``progress``/``reward`` have one value per frame; ``scored_frames`` are the frames the model was
    asked about, ``valid_frames`` those whose answer gave a value (the rest is interpolated).
    """

    episode_index: int
    episode_id: str
    source: str
    instruction: str
    length: int
    progress: list[float]
    reward: list[float]
    scored_frames: list[int]
    valid_frames: list[int]
    raw_answers: list[str]
    reasons: list[str]
    episode_score: float | None
    voc: float | None
    model_calls: int
    error: str = ""
    stamps: list[float] = field(default_factory=list)
    video: str = ""
    image_stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Strict-JSON form."""
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, payload: dict) -> EpisodeLabels:
        """Inverse of :meth:`to_json`."""
        return cls(**payload)


class EpisodeError(Exception):
    """An episode that could not be labelled (unreadable, no frames, every model call failed)."""


def dense_signals(length: int, scored_frames, scored_progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame progress and ``next.reward`` (float32) from strided scores; also the valid frames.

    Progress between valid scored frames is linearly interpolated and held after the last one.
    """
    frames = np.asarray(scored_frames, dtype=np.int64)
    values = np.asarray(scored_progress, dtype=np.float64)
    valid = np.isfinite(values)
    if not valid.any():
        raise EpisodeError("no scored frame has a progress value")
    progress = np.interp(np.arange(length), frames[valid], values[valid])
    reward = np.zeros(length)
    reward[:-1] = np.diff(progress)
    return progress.astype(np.float32), reward.astype(np.float32), frames[valid]


@dataclass
class StreamScores:
    """A scored frame stream.

    Scores (frame indices are positions in the stream), the stream's length, a read error ("" if
    none) and small copies of the scored frames (for image statistics).
    """

    scores: TrajectoryScores
    count: int
    error: str
    thumbnails: list


@dataclass
class _Reading:
    """What :func:`_scored_frames` learnt about its stream by the time it ended."""

    count: int = 0
    error: str = ""


def thumbnail(rgb: np.ndarray, longest: int = 150) -> np.ndarray:
    """Every n-th pixel so the longer side is at most about ``longest`` (LeRobot's stats do the same)."""
    step = max(1, max(rgb.shape[:2]) // longest)
    return np.ascontiguousarray(rgb[::step, ::step])


def _scored_frames(frames: Iterable, stride: int, reading: _Reading,
                   on_frame: Callable[[object], None] | None = None):
    """Yield ``(position, frame)`` for every stride-th frame and the last one, reading lazily.

    ``on_frame`` sees every frame. A stream that breaks part way ends there (``reading.error`` says
    where); one that yields nothing raises EpisodeError.
    """
    last = None
    try:
        for frame in frames:
            if on_frame is not None:
                on_frame(frame)
            if reading.count % stride == 0:
                yield reading.count, frame
            last = frame
            reading.count += 1
    except EpisodeError:
        raise
    except Exception as exc:  # BagReadError, a damaged video: keep what was read
        if reading.count == 0:
            raise EpisodeError(f"cannot read any frame: {type(exc).__name__}: {exc}") from exc
        reading.error = f"reading stopped after {reading.count} frames: {exc}"
    if reading.count == 0:
        raise EpisodeError("no frames")
    if (reading.count - 1) % stride:
        yield reading.count - 1, last


def score_stream(annotator: RewardAnnotator, frames: Iterable, instruction: str, options: LabelOptions,
                 on_frame: Callable[[object], None] | None = None, thumbnails: bool = False) -> StreamScores:
    """Score every stride-th frame and the last of a frame stream, holding one model call's frames.

    ``on_frame`` sees every frame (the bag path encodes them into the output video);
    ``thumbnails`` keeps a small copy of each scored frame for image statistics.
    """
    reading, kept = _Reading(), []

    def keep_thumbnails():
        for position, frame in _scored_frames(frames, options.stride, reading, on_frame):
            if thumbnails:
                kept.append(thumbnail(frame.rgb))
            yield position, frame

    try:
        scores = annotator.score_streamed(keep_thumbnails(), instruction, mode=options.mode,
                                          target=options.target)
    except ValueError as exc:  # frames the annotator refuses (e.g. stamps out of order)
        raise EpisodeError(str(exc)) from exc
    if scores.model_failure:
        raise EpisodeError(f"every model call failed: {scores.model_failure}")
    return StreamScores(dataclasses.replace(scores, stride=options.stride), reading.count, reading.error,
                        kept)


def _labels(unit: EpisodeUnit, instruction: str, stream: StreamScores, **extra) -> EpisodeLabels:
    scores, length = stream.scores, stream.count
    progress, reward, valid = dense_signals(length, scores.frame_indices, scores.progress)
    return EpisodeLabels(
        episode_index=unit.episode_index, episode_id=unit.episode_id, source=unit.source,
        instruction=instruction, length=length, progress=progress.tolist(), reward=reward.tolist(),
        scored_frames=scores.frame_indices.tolist(), valid_frames=valid.tolist(),
        raw_answers=list(scores.raw_answers), reasons=list(scores.reasons),
        episode_score=scores.episode_score, voc=scores.voc, model_calls=scores.model_calls,
        error="; ".join(filter(None, [stream.error, scores.error])), **extra)


def label_lerobot_episode(annotator: RewardAnnotator, source: LeRobotSource, unit: EpisodeUnit,
                          options: LabelOptions) -> EpisodeLabels:
    """Label one episode of a LeRobot dataset (raises EpisodeError)."""
    instruction = options.instruction or source.episode_task(unit.episode_index)
    frames = source.episode_frames(unit.episode_index, source.camera(options.camera))
    stream = score_stream(annotator, frames, instruction, options)
    if stream.error:  # a LeRobot episode has a fixed length: a short read cannot be written
        raise EpisodeError(stream.error)
    return _labels(unit, instruction, stream)


def label_bag_episode(annotator: RewardAnnotator, unit: EpisodeUnit, options: LabelOptions,
                      video_path: Path) -> EpisodeLabels:
    """Label one bag and encode its camera stream into ``video_path`` (raises EpisodeError)."""
    from spatial_mllm_ros.bag.reader import read_frames
    from spatial_mllm_ros.reward.video import VideoWriter

    if not options.instruction:
        raise EpisodeError("bags carry no task string: give --instruction")
    if not options.fps:
        raise EpisodeError("the dataset frame rate is not set")
    stamps: list[float] = []
    try:
        frames = read_frames(unit.source, image_topic=options.image_topic, depth_topic=options.depth_topic,
                             info_topic=options.info_topic, pose_topic=options.pose_topic,
                             start=options.start, end=options.end)
    except Exception as exc:
        raise EpisodeError(f"cannot read {unit.source}: {type(exc).__name__}: {exc}") from exc
    with VideoWriter(video_path, options.fps) as video:
        def encode(frame) -> None:
            stamps.append(float(frame.stamp))
            video.add(frame.rgb)

        stream = score_stream(annotator, frames, options.instruction, options, on_frame=encode,
                              thumbnails=True)
    return _labels(unit, options.instruction, stream, stamps=stamps, video=video_path.name,
                   image_stats=image_stats(np.stack(stream.thumbnails)))


def label_unit(annotator: RewardAnnotator, unit: EpisodeUnit, options: LabelOptions, video_path: Path,
               source: LeRobotSource | None = None) -> EpisodeLabels:
    """Label one episode of either kind; a bag's video goes to ``video_path`` (raises EpisodeError)."""
    if unit.kind == LEROBOT:
        return label_lerobot_episode(annotator, source or LeRobotSource(unit.source), unit, options)
    return label_bag_episode(annotator, unit, options, video_path)


def estimate_bag_fps(bag: str | Path, options: LabelOptions, sample: int = 16) -> tuple[int, str]:
    """The rounded frame rate of a bag's colour stream from its first ``sample`` stamps, and its topic.

    The topic is the one discovery picked when ``options.image_topic`` is AUTO, so that every bag of a
    run becomes the same video feature.
    """
    from spatial_mllm_ros.bag.reader import read_frames

    stamps = []
    details: dict = {}
    frames = read_frames(bag, image_topic=options.image_topic, depth_topic=None, info_topic=None,
                         pose_topic=None, start=options.start, end=options.end, details=details)
    for frame in frames:
        stamps.append(frame.stamp)
        if len(stamps) >= sample:
            break
    frames.close()
    topic = details["topics"].image if "topics" in details else options.image_topic
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise ValueError(f"{bag}: cannot estimate the frame rate from {len(stamps)} frame(s); give --fps")
    return max(1, round(1.0 / float(np.median(steps)))), topic


def load_annotator(model_dir: str, device: str = "cpu", dtype: str = "float32", max_frames: int = 16,
                   max_new_tokens: int = 16, frames_per_call: int | None = None,
                   backend: str = "torch", **engine_options) -> RewardAnnotator:
    """A SpatialQA engine on ``model_dir`` wrapped in an annotator (``engine_options``: e.g. max_pixels)."""
    from spatial_mllm_ros.engine import SpatialQA

    qa = SpatialQA(model_dir, backend=backend, device=device, dtype=dtype, max_frames=max_frames,
                   max_new_tokens=max_new_tokens, **engine_options)
    return RewardAnnotator(qa, frames_per_call=frames_per_call)


@dataclass
class RecordingScores:
    """What the ROS action's recording mode gets: scores, or None and the reason."""

    scores: TrajectoryScores | None
    error: str = ""


def lerobot_episode_index(episode_id: str, num_episodes: int) -> int:
    """``"3"`` or ``"episode_000003"`` -> 3 (ValueError otherwise or out of range)."""
    text = episode_id.removeprefix("episode_")
    if not text.isdigit() or int(text) >= num_episodes:
        raise ValueError(f"name the LeRobot episode by its index (0..{num_episodes - 1}), got {episode_id!r}")
    return int(text)


def score_recording(annotator: RewardAnnotator, path: str | Path, episode_id: str, options: LabelOptions,
                    progress_callback: Callable[[int, int], None] | None = None,
                    cancel_event: threading.Event | None = None) -> RecordingScores:
    """Score a recorded trajectory: a rosbag2 recording, or episode ``episode_id`` of a LeRobot dataset.

    For a LeRobot dataset ``options.camera`` picks the camera (None: the first) and the episode's
    task is the instruction unless ``options.instruction`` is set. Never raises for bad input.
    """
    path = Path(path)
    try:
        if is_lerobot_root(path):
            source = LeRobotSource(path)
            index = lerobot_episode_index(episode_id, len(source.episodes))
            # the action's image topic may name the camera feature
            cameras = source.video_keys + source.image_keys
            camera = options.camera or (options.image_topic if options.image_topic in cameras else None)
            frames = source.episode_frames(index, source.camera(camera))
            instruction = options.instruction or source.episode_task(index)
        else:
            from spatial_mllm_ros.bag.reader import read_frames

            instruction = options.instruction
            frames = read_frames(path, image_topic=options.image_topic, depth_topic=options.depth_topic,
                                 info_topic=options.info_topic, pose_topic=options.pose_topic,
                                 start=options.start, end=options.end)
        if not instruction:
            raise ValueError("instruction must not be empty")
        reading = _Reading()
        positions, kept = zip(*_scored_frames(frames, options.stride, reading), strict=True)
        scores = annotator.score(list(kept), instruction, mode=options.mode, target=options.target, stride=1,
                                 progress_callback=progress_callback, cancel_event=cancel_event)
        if scores.model_failure:
            raise EpisodeError(f"every model call failed: {scores.model_failure}")
        in_stream = np.asarray(positions, dtype=np.int64)[scores.frame_indices]
        scores = dataclasses.replace(scores, frame_indices=in_stream, stride=options.stride)
    except (EpisodeError, ValueError, OSError) as exc:
        return RecordingScores(None, f"{path}: {exc}")
    except Exception as exc:  # BagReadError and other reader failures
        return RecordingScores(None, f"cannot read {path}: {type(exc).__name__}: {exc}")
    return RecordingScores(scores, reading.error)
