# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The one video shape an engine is built for, and how any question's frames are mapped onto it.

Exported ONNX graphs and TensorRT engines are fixed per frame count and resolution, and building one
takes minutes on a Jetson. So :meth:`SpatialQA.prepare` builds them once, at configure, for
``max_frames`` frames at the camera's declared input size, and every later question is mapped onto
that shape instead of triggering a rebuild:

* resolution: frames of another size are resized to the declared input size first;
* frame count: ``k`` selected frames are spread over the ``T`` slots by nearest-neighbour repetition
  in time order (slot ``j`` shows frame ``floor(j * k / T)``), each frame keeping its own stamp.

Why repetition: Qwen2.5-VL groups frames in pairs (temporal patch 2), and a pair of identical frames is
exactly how it encodes a still image, so with ``T = 2k`` each temporal group is one real frame in
Qwen's own still-image form. Each frame keeps its stamp, so ``second_per_grid_ts`` (from the group
mean times) spreads the groups over the real time span of the question: the temporal position ids
cover the same seconds as without padding, rather than stretching a short clip over ``T`` frames of
invented time (what resampling to new stamps would do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from spatial_mllm_ros.core.frames import Frame

TEMPORAL_PATCH_SIZE = 2  # Qwen2.5-VL: frames per temporal group


def frame_slots(max_frames: int) -> int:
    """Frames per built video for ``max_frames``: rounded up to whole temporal groups."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    return max_frames + (-max_frames) % TEMPORAL_PATCH_SIZE


def spread_indices(count: int, slots: int) -> list[int]:
    """Which of ``count`` time-ordered frames fills each of ``slots`` slots (nearest-neighbour repetition)."""
    if count < 1 or slots < count:
        raise ValueError(f"cannot spread {count} frames over {slots} slots")
    return [slot * count // slots for slot in range(slots)]


def spread_frames(frames: Sequence[Frame], slots: int) -> list[Frame]:
    """``frames`` (time order) repeated onto exactly ``slots`` slots; the same objects, no copies."""
    return [frames[i] for i in spread_indices(len(frames), slots)]


@dataclass
class PreparedShape:
    """What an engine was built for: ``num_frames`` slots of ``input_hw`` frames, seen at ``model_hw``."""

    num_frames: int
    input_hw: tuple[int, int]
    model_hw: tuple[int, int]


@dataclass
class PrepareReport:
    """What :meth:`SpatialQA.prepare` built and how long it took (for the configure log and benchmarks)."""

    backend: str
    shape: PreparedShape | None  # None: no input size known, only the language model was warmed up
    built: list[str] = field(default_factory=list)  # engines/graphs built or loaded, e.g. ONNX paths
    exports: int = 0  # graphs exported during prepare (0 when they were on disk already)
    build_s: float = 0.0  # building/loading the visual engines
    warmup_s: float = 0.0  # the dummy question at the built shape (or the text-only warm-up)

    def summary(self) -> str:
        """One line for a log."""
        if self.shape is None:
            return f"{self.backend}: text-only warm-up in {self.warmup_s:.2f} s (input size unknown)"
        s = self.shape
        built = ", ".join(self.built) or "nothing to build"
        return (f"{self.backend}: {s.num_frames} frames of {s.input_hw[1]}x{s.input_hw[0]} "
                f"(model sees {s.model_hw[1]}x{s.model_hw[0]}); built {built} ({self.exports} exported) "
                f"in {self.build_s:.2f} s, warm-up question {self.warmup_s:.2f} s")
