# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The typed answer the engine returns: what the model said, what it means, and what it cost.

One plain dataclass shared by the ROS node (converted to ``SpatialAnswer``), the offline evaluation
and the reward annotator. A rejected or failed question is still an :class:`Answer`, with ``error``
set and ``kind`` "none", so that callers never need a try/except around ``SpatialQA.ask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spatial_mllm_ros.core.selection import Selection

ANSWER_KINDS = ("choice", "number", "text", "none")


@dataclass
class Answer:
    """One answer of :class:`~spatial_mllm_ros.engine.SpatialQA`.

    ``kind`` is "choice" (read ``choice_letter``/``choice_index``), "number" (read ``value`` in SI
    units with ``unit`` "m", "m^2", "count"), "text" (read ``raw_text``) or "none" (unparseable or
    failed: see ``parse_reason`` / ``error``). Latencies are in milliseconds.
    """

    query_id: str = ""
    question: str = ""
    task_type: str = ""
    kind: str = "none"
    choice_letter: str = ""
    choice_index: int = -1
    value: float = math.nan
    unit: str = ""
    raw_text: str = ""
    confidence: float = -1.0  # mean probability of the generated tokens; -1 unknown
    frame_stamps: list[float] = field(default_factory=list)
    selection: Selection | None = None
    selection_ms: float = 0.0
    encode_ms: float = 0.0
    generate_ms: float = 0.0
    model_id: str = ""
    backend: str = ""
    error: str = ""  # empty when the answer is valid
    # Beyond the agreed fields: more detail for benchmarks and logs.
    prepare_ms: float = 0.0  # resizing/patching the frames and tokenizing the prompt
    total_ms: float = 0.0
    cache_hit: bool = False  # the visual features came from the feature cache
    parse_reason: str = ""  # why the text could not be parsed (kind "none" without error)
    frame_camera_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the question was answered (``error`` empty)."""
        return not self.error

    @classmethod
    def failure(cls, error: str, question: object = "", query_id: object = "", **fields) -> Answer:
        """An answer carrying only an error (inputs are shown as text, whatever their type)."""
        question_text = question if isinstance(question, str) else repr(question)
        return cls(query_id="" if query_id is None else str(query_id), question=question_text,
                   error=error, **fields)
