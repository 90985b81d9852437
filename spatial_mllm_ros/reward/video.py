# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""LeRobot video files with PyAV: decode one episode's frames, encode a camera stream.

LeRobot v3.0 concatenates many episodes into one MP4 per camera and records each episode's
``from_timestamp``/``to_timestamp`` in the episodes table. :func:`decode_episode` seeks to the key
frame before the episode and yields only its frames, one at a time, so labelling a long dataset
never holds a whole video in memory. :class:`VideoWriter` encodes frames the way LeRobot's own
recorder does (AV1 with libsvtav1, ``yuv420p``, a key frame every 2 frames, CRF 30) into a
temporary file that replaces the destination only when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

# LeRobot's recorder settings (its ``encode_video_frames`` defaults), seen in the fixture's stream:
# AV1 via libsvtav1, yuv420p, key frames every 2 frames.
CODEC = "libsvtav1"
PIX_FMT = "yuv420p"
ENCODER_OPTIONS = {"g": "2", "crf": "30"}


def _quiet_codecs() -> None:
    """SVT-AV1 prints a banner per encoder unless told otherwise; keep errors only."""
    os.environ.setdefault("SVT_LOG", "1")


def decode_episode(path: str | Path, from_timestamp: float, to_timestamp: float,
                   fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(seconds since the episode start, HxWx3 uint8 RGB)`` for the frames in a range.

    A frame belongs to the episode when its presentation time ``t`` satisfies
    ``from - half <= t < to - half`` with ``half`` half a frame period, LeRobot's half-open range
    ``[from_timestamp, to_timestamp)`` made robust to rounding of the stored times.

    Raises:
        FileNotFoundError: no such video.
        ValueError: the file has no video stream.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    half = 0.5 / float(fps)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if from_timestamp > half and stream.time_base:
            container.seek(int((from_timestamp - half) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            if t < from_timestamp - half:
                continue
            if t >= to_timestamp - half:
                break
            yield t - from_timestamp, frame.to_ndarray(format="rgb24")


def video_stream_info(path: str | Path) -> dict:
    """The ``info`` block LeRobot writes for a video feature, read from the file itself."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        rate = stream.average_rate or stream.base_rate
        return {"video.height": int(context.height), "video.width": int(context.width),
                "video.codec": context.codec.canonical_name,
                "video.pix_fmt": context.pix_fmt, "video.is_depth_map": False,
                "video.fps": int(rate) if rate and rate.denominator == 1 else float(rate),
                "video.channels": 3, "has_audio": bool(container.streams.audio)}


class VideoWriter:
    """Encode RGB frames of one size at a constant rate into an MP4 (atomic on :meth:`close`).

    Use as a context manager; leaving the block by an exception discards the partial file.
    """

    def __init__(self, path: str | Path, fps: int):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = int(fps)
        self.num_frames = 0
        self._container = None
        self._stream = None
        self._tmp: str | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int) -> None:
        import av

        _quiet_codecs()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".mp4")
        os.close(fd)
        self._container = av.open(self._tmp, mode="w", format="mp4")
        self._stream = self._container.add_stream(CODEC, rate=Fraction(self.fps, 1))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = PIX_FMT
        self._stream.options = dict(ENCODER_OPTIONS)

    def add(self, rgb: np.ndarray) -> None:
        """Append one HxWx3 uint8 frame (even width and height, as yuv420p needs)."""
        import av

        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"frames must be HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        if self._stream is None:
            if rgb.shape[0] % 2 or rgb.shape[1] % 2:
                raise ValueError("yuv420p video needs even width and height, "
                                 f"got {rgb.shape[1]}x{rgb.shape[0]}")
            self._open(rgb.shape[0], rgb.shape[1])
        elif (rgb.shape[0], rgb.shape[1]) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame {self.num_frames} is {rgb.shape[1]}x{rgb.shape[0]}, the video is "
                             f"{self._stream.width}x{self._stream.height}")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.num_frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            raise ValueError(f"{self.path}: no frames were added")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # the file is deleted next anyway
                self._container.close()
            self._container = None
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)
