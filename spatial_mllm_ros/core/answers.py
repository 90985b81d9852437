# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Turn a model's free text into a typed answer a robot can act on.

Spatial-MLLM is asked for an option letter or "a single word or phrase", but models (and the tiny
random ones in tests) say "B. chair", "(b)", "The answer is C", "about 6 feet", "three",
"`1800` mm" (Multi-SpatialMLLM style) or nothing useful at all. :func:`parse_answer` reads all of
these into a :class:`ParsedAnswer`: a choice letter, or a number in SI units (metres, square metres,
a count), or a clear reason why nothing could be read. Scoring (``metrics``) relies on it, and
``vsibench_first_token`` keeps the benchmark's own stricter rule available for comparisons with
published numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from spatial_mllm_ros.core.prompts import (
    MULTIPLE_CHOICE_TASK_TYPES,
    OPEN_TASK_TYPE,
    OPTION_LETTERS,
    TASK_TYPES,
    option_texts,
)

KINDS = ("choice", "number", "text", "none")

# What a bare number means per numeric task: VSI-Bench asks distances in metres, object sizes in
# centimetres and room sizes in square metres (and its ground truth uses the same units).
_TASK_DIMENSION = {
    "object_counting": "count",
    "object_abs_distance": "length",
    "object_size_estimation": "length",
    "room_size_estimation": "area",
}
VSIBENCH_UNITS = {
    "object_counting": "count",
    "object_abs_distance": "m",
    "object_size_estimation": "cm",
    "room_size_estimation": "m^2",
}
_SI_UNIT = {"count": "count", "length": "m", "area": "m^2"}

# unit name -> (dimension, factor to SI)
UNITS: dict[str, tuple[str, float]] = {
    "count": ("count", 1.0),
    "km": ("length", 1000.0),
    "m": ("length", 1.0),
    "cm": ("length", 0.01),
    "mm": ("length", 0.001),
    "yd": ("length", 0.9144),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "km^2": ("area", 1.0e6),
    "m^2": ("area", 1.0),
    "cm^2": ("area", 1.0e-4),
    "mm^2": ("area", 1.0e-6),
    "in^2": ("area", 0.00064516),
    "yd^2": ("area", 0.83612736),
    "ft^2": ("area", 0.09290304),
}

_SQUARE = r"(?:square|sq\.?)\s*"
_SUPER2 = r"(?:²|\^2|2(?!\d))"
# Tried in order at the position right after a number; each is followed by (?![A-Za-z]).
_UNIT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"{_SQUARE}(?:kilomet(?:er|re)s?|km)|km{_SUPER2}", re.I), "km^2"),
    (re.compile(rf"{_SQUARE}(?:centimet(?:er|re)s?|cm)|cm{_SUPER2}", re.I), "cm^2"),
    (re.compile(rf"{_SQUARE}(?:met(?:er|re)s?|m)|m{_SUPER2}|sqm", re.I), "m^2"),
    (re.compile(rf"{_SQUARE}(?:yards?|yd)|yd{_SUPER2}", re.I), "yd^2"),
    (re.compile(rf"{_SQUARE}(?:feet|foot|ft)|ft{_SUPER2}", re.I), "ft^2"),
    (re.compile(r"kilomet(?:er|re)s?|km", re.I), "km"),
    (re.compile(r"centimet(?:er|re)s?|cm", re.I), "cm"),
    (re.compile(r"millimet(?:er|re)s?|mm", re.I), "mm"),
    (re.compile(r"met(?:er|re)s?|mtrs?|m", re.I), "m"),
    (re.compile(r"yards?|yds?", re.I), "yd"),
    (re.compile(r"feet|foot|ft", re.I), "ft"),
    # "in" only where it cannot be the preposition ("3 in the corner").
    (re.compile(r"inch(?:es)?|in(?=\s*(?:$|[.,;:)!?]|\d))", re.I), "in"),
]

_NUMBER = re.compile(
    r"(?<![\w.])(?:(?<![\w.])[-+])?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
)
_SPECIAL_TOKENS = re.compile(r"<\|[^|>]*\|>|</?s>")

_SMALL_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90,
}
_NUMBER_WORD = "|".join([*_SMALL_NUMBERS, *_TENS, "hundred", "thousand"])
_NUMBER_PHRASE = re.compile(
    rf"\b(?:{_NUMBER_WORD})(?:(?:\s+and\s+|\s+|-)(?:{_NUMBER_WORD}))*\b", re.I
)
# Applied in order before digits are read.
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bhalf\s+a\s+dozen\b", re.I), "6"),
    (re.compile(r"\b(?:a|one)\s+dozen\b", re.I), "12"),
    (re.compile(r"\ba\s+(?:couple|pair)\s+of\b", re.I), "2"),
    (re.compile(r"\ba\s+(?:single|lone)\b", re.I), "1"),
]
_AND_A_HALF = re.compile(r"(\d+(?:\.\d+)?)\s+and\s+a\s+half\b", re.I)
_HALF_A = re.compile(r"\bhalf\s+an?\b|\ba\s+half\b", re.I)
_FRACTION = re.compile(r"(?<![\d.,/])(\d+)\s*/\s*(\d+)(?![\d.,/])")
_FEET_INCHES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:'|′|’)\s*(\d+(?:\.\d+)?)\s*(?:\"|″|''|”)")
_ZERO_WORDS = re.compile(
    r"\b(?:none|no(?!\s+(?:idea|answer|way|clue))|not\s+any|aren'?t\s+any|isn'?t\s+any|nothing)\b", re.I
)

_RANGE_GAP = re.compile(r"\s*(?:-|–|—|to|or)\s*$", re.I)
_PRODUCT_GAP = re.compile(r"\s*(?:x|×|\*|by)\s*$", re.I)
_COMPOUND_GAP = re.compile(r"\s*(?:,|and)?\s*$", re.I)


@dataclass(frozen=True)
class ParsedAnswer:
    """A model answer read into a type.

    ``kind`` is "choice" (``choice_letter``/``choice_index`` set), "number" (``value`` in SI
    ``unit``: "m", "m^2", "count", or "" for an open question without a unit), "text" (an open
    question answered in words; see ``text``) or "none" (``reason`` says why nothing was read).
    A choice whose option text is a number (e.g. a counting question asked with options) also
    carries that ``value``/``unit``. ``text`` is the cleaned answer text.
    """

    kind: str
    choice_letter: str = ""
    choice_index: int = -1
    value: float = math.nan
    unit: str = ""
    reason: str = ""
    text: str = ""


def vsibench_first_token(text: str) -> str:
    """VSI-Bench's own answer matching: the first space-separated token without a trailing '.'."""
    return text.split(" ")[0].rstrip(".").strip()


def parse_answer(
    text: str,
    task_type: str | None,
    options: Sequence[str] | None = None,
    *,
    default_unit: str | None = None,
) -> ParsedAnswer:
    """Read a model's answer for a task type (one of ``prompts.TASK_TYPES``, "open" or None).

    Multiple-choice tasks (and any question given ``options``) give a choice; numeric tasks give a
    number converted to SI units ("180 cm" -> 1.8 m, "6 feet" -> 1.8288 m, "20 sq ft" -> 1.858 m^2,
    "three" -> 3 counts). A bare number takes the task's VSI-Bench unit (distance m, object size cm,
    room size m^2) or ``default_unit`` when given (e.g. "mm" for Multi-SpatialMLLM-style prompts);
    a bare number in backticks in a length task is millimetres (the Multi-SpatialMLLM convention)
    unless ``default_unit`` says otherwise. Never raises on bad text: kind "none" with a reason.
    Raises ValueError for an unknown task type or unit name (a programming error).
    """
    task = task_type or OPEN_TASK_TYPE
    if task not in TASK_TYPES and task != OPEN_TASK_TYPE:
        raise ValueError(f"unknown task type {task_type!r}")
    if default_unit is not None and default_unit not in UNITS:
        raise ValueError(f"unknown unit {default_unit!r}; expected one of {', '.join(UNITS)}")
    if not isinstance(text, str):
        return ParsedAnswer("none", reason=f"answer is {type(text).__name__}, not text")
    cleaned = _clean(text)
    if not cleaned:
        return ParsedAnswer("none", reason="empty answer")

    if options or task in MULTIPLE_CHOICE_TASK_TYPES:
        return _parse_choice(cleaned, task, options)
    if task == OPEN_TASK_TYPE:
        dimension = None
        if default_unit is not None:
            dimension = UNITS[default_unit][0]
        number = _parse_number(cleaned, dimension, default_unit, backticks_mm=False)
        if number.kind == "number":
            return number
        return ParsedAnswer("text", text=cleaned)
    unit = default_unit
    backticks_mm = default_unit is None and _TASK_DIMENSION[task] == "length"
    if unit is None:
        unit = VSIBENCH_UNITS[task]
    if UNITS[unit][0] != _TASK_DIMENSION[task]:
        raise ValueError(f"unit {unit!r} does not measure a {_TASK_DIMENSION[task]} ({task})")
    return _parse_number(cleaned, _TASK_DIMENSION[task], unit, backticks_mm=backticks_mm, task=task)


def _clean(text: str) -> str:
    """Drop chat special tokens, markdown emphasis, surrounding quotes and extra white space."""
    text = _SPECIAL_TOKENS.sub(" ", text)
    text = text.replace("**", "").replace("__", "").replace("−", "-")
    text = " ".join(text.split())
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# ---------------------------------------------------------------------------------------------
# Multiple choice


_LEADING_LETTER = re.compile(r"^[(\[]?([A-Za-z])(?:[)\]]|(?=[.:,;!?]|\s|$))(.*)$", re.S)
_PUNCTUATED_LETTER = re.compile(r"^[(\[]?[A-Za-z]\s*(?:[)\].:,;!?]|$)")
_ANSWER_IS_LETTER = re.compile(
    r"(?i:answer|option|choice)\s*(?:(?i:is|would\s+be|should\s+be|will\s+be)\s*)?[:\-]?\s*"
    r"(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![A-Za-z])|([a-z])(?=[.)]|$))"
)
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z'’])[(\[]?([A-Z])[)\]]?(?![A-Za-z'’])")


def _parse_choice(text: str, task: str, options: Sequence[str] | None) -> ParsedAnswer:
    """Option letter from "B", "B.", "(b)", "B. chair", "The answer is C" or an option's text."""
    count = len(options) if options else 4  # VSI-Bench questions have at most 4 options
    letters = OPTION_LETTERS[:count]
    texts = option_texts(options) if options else []
    letter, problem = _find_letter(text, letters, texts)
    if letter is None and texts:
        index = _match_option_text(text, texts)
        if index is not None:
            letter = letters[index]
    if letter is None:
        if problem:
            return ParsedAnswer("none", reason=problem, text=text)
        return ParsedAnswer(
            "none", reason=f"no option letter ({letters[0]}-{letters[-1]}) or option text in {_quote(text)}",
            text=text,
        )
    index = letters.index(letter)
    value, unit = math.nan, ""
    dimension = _TASK_DIMENSION.get(task)
    if texts and dimension:
        number = _parse_number(_clean(texts[index]), dimension, VSIBENCH_UNITS[task], backticks_mm=False)
        value, unit = number.value, number.unit
    return ParsedAnswer("choice", choice_letter=letter, choice_index=index, value=value, unit=unit, text=text)


def _find_letter(text: str, letters: str, texts: list[str]) -> tuple[str | None, str]:
    """A letter named by the answer, or (None, reason) when it names one that is not an option."""
    leading = _LEADING_LETTER.match(text)
    if leading:
        letter, rest = leading.group(1).upper(), leading.group(2).strip()
        punctuated = bool(_PUNCTUATED_LETTER.match(text))
        # "A chair is ..." / "I think ..." start with a word, not with a letter.
        article = not punctuated and letter in "AI" and rest[:1].isalpha()
        if article and letter in letters and texts:
            article = not _normalise(rest).startswith(_normalise(texts[letters.index(letter)]))
        # "B and C", "B or C", "B, C": several letters, decided below
        listing = re.match(r"^(?:(?:and|or|,|/)\s*)+[(\[]?[A-Z](?![A-Za-z])", rest) is not None
        if not article and not listing:
            if letter in letters:
                return letter, ""
            if punctuated or not rest:
                return None, f"letter {letter} is not among the options {letters[0]}-{letters[-1]}"
    said = _ANSWER_IS_LETTER.search(text)
    if said:
        letter = next(g for g in said.groups() if g).upper()
        if letter in letters:
            return letter, ""
        return None, f"letter {letter} is not among the options {letters[0]}-{letters[-1]}"
    found = []
    for match in _STANDALONE_LETTER.finditer(text):
        letter = match.group(1)
        bracketed = match.group(0) != letter
        # "A"/"I" before a lower-case word is an article/pronoun ("a chair", "I think"), unless
        # the word is "and"/"or" ("A or C").
        word_follows = re.match(r"\s+[a-z]", text[match.end():]) and not re.match(
            r"\s+(?:and|or)\b", text[match.end():]
        )
        plain_word = letter in "AI" and not bracketed and word_follows
        if letter in letters and not plain_word and letter not in found:
            found.append(letter)
    if len(found) == 1:
        return found[0], ""
    if len(found) > 1:
        return None, f"ambiguous: several option letters ({', '.join(found)}) in {_quote(text)}"
    return None, ""


def _normalise(text: str) -> str:
    """Lower case, words and commas only ("Front-Left." -> "front left")."""
    return " ".join(re.sub(r"[^\w\s,]", " ", text.lower()).split()).strip(" ,")


def _match_option_text(text: str, texts: list[str]) -> int | None:
    """The one option whose text the answer states (exactly, or as the only/longest mention)."""
    answer = _normalise(text)
    normalised = [_normalise(t) for t in texts]
    if answer in normalised and normalised.count(answer) == 1:
        return normalised.index(answer)
    mentioned = [
        i for i, option in enumerate(normalised)
        if option and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", answer)
    ]
    # "front-left" also mentions "left": keep only mentions not contained in a longer one.
    longest = [i for i in mentioned if not any(normalised[i] in normalised[j] and i != j for j in mentioned)]
    return longest[0] if len(longest) == 1 else None


# ---------------------------------------------------------------------------------------------
# Numbers


@dataclass(frozen=True)
class _Quantity:
    value: float
    unit: str | None  # a key of UNITS, or None when the number has no unit
    start: int
    end: int
    backticked: bool


def _words_to_digits(text: str) -> str:
    """"three" -> "3", "twenty-one" -> "21", "a dozen" -> "12", "one and a half" -> "1.5", "1/2" -> "0.5"."""
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    text = _NUMBER_PHRASE.sub(lambda m: " and ".join(str(v) for v in _number_phrase_values(m.group(0))), text)
    text = _AND_A_HALF.sub(lambda m: _format(float(m.group(1)) + 0.5), text)
    text = _HALF_A.sub("0.5", text)
    text = _FRACTION.sub(_fraction_to_decimal, text)
    return _FEET_INCHES.sub(r"\1 ft \2 in", text)


def _fraction_to_decimal(match: re.Match[str]) -> str:
    numerator, denominator = int(match.group(1)), int(match.group(2))
    return repr(numerator / denominator) if denominator else match.group(0)


def _format(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _number_phrase_values(phrase: str) -> list[int]:
    """Values of a run of number words; "one and two" is two numbers, "two hundred and five" one."""
    values: list[int] = []
    total = current = 0
    started = False
    last = ""
    for token in re.split(r"[\s-]+", phrase.lower()):
        if token == "and":
            if last in ("hundred", "thousand"):
                continue
            values.append(total + current)
            total = current = 0
            started, last = False, ""
            continue
        if started and (
            (token in _SMALL_NUMBERS and last not in _TENS and last not in ("hundred", "thousand"))
            or (token in _SMALL_NUMBERS and last in _TENS and _SMALL_NUMBERS[token] >= 10)
            or (token in _TENS and last not in ("hundred", "thousand"))
        ):
            values.append(total + current)
            total = current = 0
        if token in _SMALL_NUMBERS:
            current += _SMALL_NUMBERS[token]
        elif token in _TENS:
            current += _TENS[token]
        elif token == "hundred":
            current = (current or 1) * 100
        else:  # thousand
            total += (current or 1) * 1000
            current = 0
        started, last = True, token
    if started:
        values.append(total + current)
    return values


def _to_float(token: str) -> float:
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        return float(token.replace(",", ""))
    return float(token.replace(",", "."))


def _quantities(text: str) -> list[_Quantity]:
    """Every number in the text with the unit written right after it (if any)."""
    backtick_spans = [m.span() for m in re.finditer(r"`[^`]*`", text)]
    plain = text.replace("`", " ")
    found = []
    for match in _NUMBER.finditer(plain):
        value = _to_float(match.group(0))
        end = match.end()
        unit = None
        rest = plain[end:]
        gap = re.match(r"\s*-?\s*", rest)
        after = rest[gap.end():] if gap else rest
        for pattern, name in _UNIT_PATTERNS:
            unit_match = pattern.match(after)
            if unit_match and not re.match(r"[A-Za-z]", after[unit_match.end():unit_match.end() + 1]):
                unit = name
                end += (gap.end() if gap else 0) + unit_match.end()
                break
        backticked = any(a <= match.start() < b for a, b in backtick_spans)
        found.append(_Quantity(value, unit, match.start(), end, backticked))
    return found


def _combine(text: str, quantities: list[_Quantity], dimension: str | None) -> list[_Quantity]:
    """Merge "2-3 m", "between 2 and 3 m" (mean), "5 ft 6 in", "1 m 20 cm" (sum), "5 x 4 m" (area)."""
    merged: list[_Quantity] = []
    i = 0
    while i < len(quantities):
        first = quantities[i]
        if i + 1 < len(quantities):
            second = quantities[i + 1]
            gap = text[first.end:second.start].replace("`", " ")
            between = re.search(r"between\s*$", text[: first.start], re.I) is not None
            combined = _combine_pair(first, second, gap, dimension, between)
            if combined is not None:
                merged.append(combined)
                i += 2
                continue
        merged.append(first)
        i += 1
    return merged


def _combine_pair(
    first: _Quantity, second: _Quantity, gap: str, dimension: str | None, between: bool
) -> _Quantity | None:
    both = (first.start, second.end, first.backticked or second.backticked)
    units = {first.unit, second.unit} - {None}
    length_units = all(UNITS[u][0] == "length" for u in units)
    if dimension == "area" and _PRODUCT_GAP.fullmatch(gap) and length_units and len(units) <= 1:
        unit = next(iter(units)) if units else "m"
        factor = UNITS[unit][1]
        return _Quantity(first.value * second.value * factor * factor, "m^2", *both)
    is_range = _RANGE_GAP.fullmatch(gap) or (between and re.fullmatch(r"\s*and\s*", gap, re.I))
    if is_range and (first.unit is None or first.unit == second.unit):
        return _Quantity((first.value + second.value) / 2.0, second.unit, *both)
    if (
        _COMPOUND_GAP.fullmatch(gap) and first.unit and second.unit
        and UNITS[first.unit][0] == UNITS[second.unit][0] == "length"
        and UNITS[second.unit][1] < UNITS[first.unit][1]
    ):
        total = first.value * UNITS[first.unit][1] + second.value * UNITS[second.unit][1]
        return _Quantity(total, "m", *both)
    return None


def _parse_number(
    text: str, dimension: str | None, default_unit: str | None, *, backticks_mm: bool, task: str = ""
) -> ParsedAnswer:
    """The answer's number in SI units for a dimension ("count", "length", "area" or None: any)."""
    digits = _words_to_digits(text)
    found = _combine(digits, _quantities(digits), dimension)
    quantities = [q for q in found if math.isfinite(q.value)]
    if found and not quantities:
        return ParsedAnswer("none", reason=f"number out of range in {_quote(text)}", text=text)
    if not quantities:
        if dimension == "count" and _ZERO_WORDS.search(text):
            return ParsedAnswer("number", value=0.0, unit="count", text=text)
        return ParsedAnswer("none", reason=f"no number in {_quote(text)}", text=text)

    if dimension in (None, "count"):
        chosen = quantities[0]
    else:
        chosen = _pick(quantities, dimension)
        if chosen is None:
            wrong = next(q.unit for q in quantities if q.unit)
            return ParsedAnswer(
                "none", text=text,
                reason=f"unit {wrong} measures a {UNITS[wrong][0]} but {task or 'the question'} asks for a "
                f"{dimension}",
            )
    unit = chosen.unit
    if dimension == "count":
        unit = "count"
    elif unit is None:
        unit = "mm" if backticks_mm and chosen.backticked else default_unit
    elif dimension == "area" and UNITS[unit][0] == "length":
        unit = unit + "^2"  # "20 meters" for a room's size: the model dropped the "square"
    if unit is None:
        return ParsedAnswer("number", value=chosen.value, unit="", text=text)
    unit_dimension, factor = UNITS[unit]
    value = chosen.value * factor
    if not math.isfinite(value):
        return ParsedAnswer("none", reason=f"value out of range in {_quote(text)}", text=text)
    return ParsedAnswer("number", value=value, unit=_SI_UNIT[unit_dimension], text=text)


def _pick(quantities: list[_Quantity], dimension: str) -> _Quantity | None:
    """First quantity with a unit of the dimension; else the first bare number; else None."""
    for quantity in quantities:
        unit_dimension = UNITS[quantity.unit][0] if quantity.unit else None
        if unit_dimension == dimension or (dimension == "area" and unit_dimension == "length"):
            if unit_dimension != dimension:
                # prefer a real area later in the text ("5 m by 4 m, so 20 m^2")
                area = next((q for q in quantities if q.unit and UNITS[q.unit][0] == "area"), None)
                return area or quantity
            return quantity
    return next((q for q in quantities if q.unit is None), None)
