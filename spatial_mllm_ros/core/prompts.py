# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VSI-Bench task types and the prompt templates Spatial-MLLM was trained and evaluated with.

The model answers best when asked the way it was fine-tuned: multiple-choice questions list their
options as "A. ..." lines and ask for the letter; numeric questions ask for a single word or
phrase (DESIGN §5). A robot's free-form question has no task type, so :func:`infer_task_type`
recognises the VSI-Bench phrasings (and close paraphrases) from the question text and options.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

# The VSI-Bench ``question_type`` values, in the order of the benchmark's tables.
TASK_TYPES: tuple[str, ...] = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "route_planning",
    "obj_appearance_order",
)

# Tasks scored by Mean Relative Accuracy on a number (VSI-Bench "NA" question types).
NUMERIC_TASK_TYPES: frozenset[str] = frozenset(
    {"object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"}
)

# Tasks scored by exact-match accuracy on an option letter (VSI-Bench "MCA" question types).
MULTIPLE_CHOICE_TASK_TYPES: frozenset[str] = frozenset(TASK_TYPES) - NUMERIC_TASK_TYPES

# A question that is none of the above: answered and parsed, but not scored.
OPEN_TASK_TYPE = "open"

MULTIPLE_CHOICE_SUFFIX = "Answer with the option's letter from the given choices directly."
NUMERIC_SUFFIX = "Please answer the question using a single word or phrase."

OPTION_LETTERS = string.ascii_uppercase

# "A. chair", "B) chair", "(C) chair", "D: chair" -> letter + text.
_LETTERED_OPTION = re.compile(r"^\s*\(?([A-Za-z])\s*[.):]\s*(.*)$", re.S)

_DIRECTION_WORDS = re.compile(r"\b(left|right|front|back|behind)\b")


def split_option(option: str) -> tuple[str | None, str]:
    """Split a VSI-Bench option such as ``"B. chair"`` into ``("B", "chair")``.

    The letter comes back upper-case; options without a letter prefix give ``(None, text)``.
    """
    match = _LETTERED_OPTION.match(option)
    if match:
        return match.group(1).upper(), match.group(2).strip()
    return None, option.strip()


def option_texts(options: Sequence[str]) -> list[str]:
    """The options' texts without their letter prefixes."""
    return [split_option(option)[1] for option in options]


def format_options(options: Sequence[str]) -> list[str]:
    """Options as ``"A. text"`` lines, lettered by position.

    Options that already carry their letter (VSI-Bench rows store them as ``"A. chair"``) keep it
    when it matches their position; anything else is re-lettered, so the prompt always shows
    A, B, C, ... in order.
    """
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options are supported, got {len(options)}")
    return [f"{OPTION_LETTERS[i]}. {text}" for i, text in enumerate(option_texts(options))]


def infer_task_type(question: str, options: Sequence[str] | None = None) -> str:
    """Guess the VSI-Bench task type of a question from its wording and options.

    Returns one of :data:`TASK_TYPES`, or :data:`OPEN_TASK_TYPE` when the question looks like none
    of them (it is then still answered, but with no unit convention and no score).
    """
    text = " ".join(question.lower().split())
    has_options = bool(options)
    opts = [t.lower() for t in option_texts(options or [])]

    if "appearance order" in text or "first-time appearance" in text or "appear first" in text:
        return "obj_appearance_order"
    if "navigate to" in text or "[please fill in]" in text or (
        has_options and any("turn" in o for o in opts) and "go forward" in text
    ):
        return "route_planning"
    if "standing by" in text or ("facing" in text and _DIRECTION_WORDS.search(text)):
        return _rel_direction_level(text, opts)
    if has_options and ("closest to" in text or "farthest from" in text or "nearest to" in text):
        return "object_rel_distance"
    if re.search(r"\bhow many\b", text) and not re.search(r"how many (meters|metres|centimeters|feet)", text):
        if re.search(r"square|area|size of (this|the) room", text):
            return "room_size_estimation"
        return "object_counting"
    room_words = re.search(r"\b(size|area|square (meters|metres|feet))\b", text)
    if ("room" in text or "space" in text) and room_words:
        return "room_size_estimation"
    if re.search(r"\b(distance|how far|far apart)\b", text):
        return "object_abs_distance"
    if re.search(r"\b(longest dimension|how (tall|long|wide|big|high)|height|length|width|size)\b", text):
        return "object_size_estimation"
    if has_options:
        return _options_only_guess(opts)
    return OPEN_TASK_TYPE


def _rel_direction_level(text: str, opts: list[str]) -> str:
    """Easy (left/right), medium (left/right/back) or hard (four quadrants) relative direction."""
    words = " ".join(opts) if opts else text
    if re.search(r"(front|back)-(left|right)", words):
        return "object_rel_direction_hard"
    if "back" in words or "behind" in words:
        return "object_rel_direction_medium"
    return "object_rel_direction_easy"


def _options_only_guess(opts: list[str]) -> str:
    """Task type from the options alone (question wording unknown)."""
    if opts and all(re.fullmatch(r"(front|back)-(left|right)", o) for o in opts):
        return "object_rel_direction_hard"
    if opts and set(opts) <= {"left", "right", "back"}:
        return "object_rel_direction_medium" if "back" in opts else "object_rel_direction_easy"
    if opts and all("turn" in o for o in opts):
        return "route_planning"
    if opts and all(o.count(",") >= 2 for o in opts):
        return "obj_appearance_order"
    return OPEN_TASK_TYPE


def build_prompt(question: str, options: Sequence[str] | None = None, task_type: str | None = None) -> str:
    r"""The upstream prompt for a question (DESIGN §5).

    With options (every multiple-choice task; a numeric question given options is asked as multiple
    choice too): ``"{question}\nOptions:\nA. ...\nB. ...\nAnswer with the option's letter from
    the given choices directly."``; without options:
    ``"{question}\nPlease answer the question using a single word or phrase."``.
    A multiple-choice task type without options is an error; so is an empty question.
    """
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    if task_type is None:
        task_type = infer_task_type(question, options)
    if task_type not in TASK_TYPES and task_type != OPEN_TASK_TYPE:
        known = ", ".join(TASK_TYPES)
        raise ValueError(f"unknown task type {task_type!r}; expected one of {known} or 'open'")
    if task_type in MULTIPLE_CHOICE_TASK_TYPES and not options:
        raise ValueError(f"task type {task_type} is multiple choice but no options were given")
    if options:
        lines = [question, "Options:", *format_options(options), MULTIPLE_CHOICE_SUFFIX]
        return "\n".join(lines)
    return f"{question}\n{NUMERIC_SUFFIX}"
