# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The question request schema: what a ``~/question`` JSON text or an ``AskSpatial`` request may hold.

A robot's bus is open, so every field is bounded before anything is queued: question and option
lengths, the number of options, ``max_frames`` within the node's own maximum, time windows finite,
non-negative, ordered and below :data:`MAX_STAMP_S`, a known task type. JSON text is checked for size
and nesting depth *before* it is parsed (a 100k-deep document must not reach the recursive parser),
and non-finite numbers (``1e400``, ``-Infinity``, ``NaN``) are refused while parsing.

Every refusal is a :class:`Rejection`: a short ``reason`` key for counters plus a message for people.
Nothing here raises for bad input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from spatial_mllm_ros.core.prompts import OPEN_TASK_TYPE, TASK_TYPES

MAX_QUESTION_CHARS = 4000
MAX_OPTIONS = 26  # letters A..Z
MAX_OPTION_CHARS = 500
MAX_QUERY_ID_CHARS = 128
# Longest ~/question text accepted at all (characters): a maximal question and option list fits even
# with every character written as a 6-character \\uXXXX escape.
MAX_TEXT_CHARS = 128 * 1024
# The question object is flat (an object holding one list); anything deeper is not a question.
MAX_JSON_DEPTH = 4
# Largest time-window bound in seconds: ROS 2 Time holds int32 seconds; anything beyond is a bug.
MAX_STAMP_S = float(2**31)
TASK_TYPE_CHOICES = ("", *TASK_TYPES, OPEN_TASK_TYPE)

# Rejection reason keys (counters are named ``rejected_<reason>``).
REASON_TOO_LARGE = "too_large"
REASON_TOO_DEEP = "too_deep"
REASON_INVALID_JSON = "invalid_json"
REASON_UNKNOWN_FIELD = "unknown_field"
REQUEST_REASONS = (REASON_TOO_LARGE, REASON_TOO_DEEP, REASON_INVALID_JSON, REASON_UNKNOWN_FIELD,
                   "invalid_request", "invalid_question", "invalid_options", "invalid_task_type",
                   "invalid_max_frames", "invalid_window", "invalid_query_id")

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


@dataclass(frozen=True)
class Rejection:
    """A refused request: ``reason`` is a counter key, ``message`` says why.

    ``question`` and ``query_id`` are what could be read of the request (for echoing in the answer),
    cut to their bounds.
    """

    reason: str
    message: str
    question: str = ""
    query_id: str = ""
    task_type: str = ""


@dataclass(frozen=True)
class RequestLimits:
    """Bounds that depend on the node: ``max_frames`` is the most frames a question may ask for."""

    max_frames: int
    max_text_chars: int = MAX_TEXT_CHARS
    max_json_depth: int = MAX_JSON_DEPTH

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_text_chars < 2 or self.max_json_depth < 1:
            raise ValueError(f"bad request limits {self}")


def _custom(reason: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(reason, message)


class QuestionRequest(BaseModel):
    """One validated question, ready for the queue.

    ``max_frames`` 0 means the node's default; ``window_start``/``window_end`` None mean unbounded.
    Validate with :func:`validate_request` (it needs the node's :class:`RequestLimits`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: StrictStr = Field(max_length=MAX_QUESTION_CHARS)
    options: tuple[StrictStr, ...] = Field(default=(), max_length=MAX_OPTIONS)
    task_type: StrictStr = ""
    max_frames: StrictInt = 0
    window_start: float | None = None
    window_end: float | None = None
    query_id: StrictStr = Field(default="", max_length=MAX_QUERY_ID_CHARS)

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise _custom("invalid_question", "the question is empty")
        return value

    @field_validator("options")
    @classmethod
    def _options_bounded(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, option in enumerate(value):
            if not option.strip():
                raise _custom("invalid_options", f"option {index} is empty")
            if len(option) > MAX_OPTION_CHARS:
                raise _custom("invalid_options",
                              f"option {index} has {len(option)} characters (at most {MAX_OPTION_CHARS})")
        return tuple(option.strip() for option in value)

    @field_validator("task_type")
    @classmethod
    def _task_type_known(cls, value: str) -> str:
        if value not in TASK_TYPE_CHOICES:
            known = ", ".join(TASK_TYPE_CHOICES[1:])
            raise _custom("invalid_task_type",
                          f"unknown task type {value[:64]!r}; expected one of {known} or empty (inferred)")
        return value

    @field_validator("max_frames")
    @classmethod
    def _max_frames_within_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_frames")
        if value < 0 or (limit is not None and value > limit):
            raise _custom("invalid_max_frames",
                          f"max_frames {value} is outside 0..{limit} (0 = the node's default of at most "
                          f"{limit})")
        return value

    @field_validator("window_start", "window_end", mode="before")
    @classmethod
    def _stamp_sane(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _custom("invalid_window", "time window bounds must be numbers (seconds)")
        if not (math.isfinite(value) and 0.0 <= value <= MAX_STAMP_S):
            raise _custom("invalid_window",
                          f"time window bounds must be finite seconds in 0..{MAX_STAMP_S:.0f}")
        return float(value)

    @field_validator("query_id")
    @classmethod
    def _query_id_printable(cls, value: str) -> str:
        if not value.isprintable():
            raise _custom("invalid_query_id", "query_id must be printable text")
        return value

    @model_validator(mode="after")
    def _window_ordered(self) -> QuestionRequest:
        start, end = self.window_start, self.window_end
        if start is not None and end is not None and end < start:
            raise _custom("invalid_window", f"time window ends ({end:.3f}) before it starts ({start:.3f})")
        return self


_FIELD_REASONS = {"question": "invalid_question", "options": "invalid_options",
                  "task_type": "invalid_task_type", "max_frames": "invalid_max_frames",
                  "window_start": "invalid_window", "window_end": "invalid_window",
                  "query_id": "invalid_query_id"}


def _echo(fields: Mapping[str, Any]) -> dict[str, str]:
    """What of a rejected request can be echoed back (strings only, cut to their bounds)."""
    def text(name: str, limit: int) -> str:
        value = fields.get(name)
        return value[:limit] if isinstance(value, str) else ""

    return {"question": text("question", MAX_QUESTION_CHARS),
            "query_id": text("query_id", MAX_QUERY_ID_CHARS), "task_type": text("task_type", 64)}


def _rejection_from(error: ValidationError, fields: Mapping[str, Any]) -> Rejection:
    first = error.errors(include_url=False, include_input=False)[0]
    kind, location = first["type"], first["loc"]
    field = str(location[0]) if location else ""
    if kind == "extra_forbidden":
        reason, message = REASON_UNKNOWN_FIELD, (f"unknown field {field[:64]!r}; expected "
                                                 f"{', '.join(QuestionRequest.model_fields)}")
    else:
        reason = kind if kind in REQUEST_REASONS else _FIELD_REASONS.get(field, "invalid_request")
        message = f"{field}: {first['msg']}" if field else first["msg"]
    return Rejection(reason, message, **_echo(fields))


def validate_request(fields: Mapping[str, Any], limits: RequestLimits) -> QuestionRequest | Rejection:
    """Validate request fields (``AskSpatial`` as a dict, or parsed JSON) against the schema and limits.

    For ``AskSpatial``, pass ``window_start``/``window_end`` as None when the message's stamp is zero.
    """
    if not isinstance(fields, Mapping):
        return Rejection("invalid_request",
                         f"a question request must be an object, got {type(fields).__name__}")
    try:
        return QuestionRequest.model_validate(dict(fields), context={"max_frames": limits.max_frames})
    except ValidationError as error:
        return _rejection_from(error, fields)


def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings not counted (linear, no recursion)."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    if not skeleton:
        return 0
    steps = _BRACKET_STEP[np.frombuffer(skeleton, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 18:
        raise ValueError(f"integer {text[:32]}... is out of range")
    return int(text)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _too_large(text: str, limits: RequestLimits) -> Rejection:
    return Rejection(REASON_TOO_LARGE, f"request of {len(text)} characters exceeds {limits.max_text_chars}")


def parse_json_object(text: str, limits: RequestLimits) -> dict[str, Any] | Rejection:
    """A JSON object from untrusted text: size and depth checked before parsing, numbers kept finite."""
    if len(text) > limits.max_text_chars:
        return _too_large(text, limits)
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        return Rejection(REASON_TOO_DEEP, f"JSON nested {depth} deep (at most {limits.max_json_depth})")
    try:
        value = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int,
                           parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        return Rejection(REASON_INVALID_JSON, f"invalid question JSON: {str(error)[:200]}")
    if not isinstance(value, dict):
        return Rejection(REASON_INVALID_JSON, f"question JSON must be an object, got {type(value).__name__}")
    return value


def parse_question_text(text: str, limits: RequestLimits) -> QuestionRequest | Rejection:
    """A ``~/question`` text: a JSON object (``{"question": ..., "options": [...]}``) or a plain question."""
    if not isinstance(text, str):
        return Rejection("invalid_request", f"question text must be a string, got {type(text).__name__}")
    if len(text) > limits.max_text_chars:
        return _too_large(text, limits)
    stripped = text.strip()
    if not stripped.startswith("{"):
        return validate_request({"question": stripped}, limits)
    fields = parse_json_object(stripped, limits)
    if isinstance(fields, Rejection):
        return fields
    return validate_request(fields, limits)
