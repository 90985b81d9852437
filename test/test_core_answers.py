# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Answer parsing on a table of real-looking model outputs: letters, units, words, garbage."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.core.answers import ParsedAnswer, parse_answer, vsibench_first_token

DIST = "object_abs_distance"
SIZE = "object_size_estimation"
ROOM = "room_size_estimation"
COUNT = "object_counting"
REL = "object_rel_distance"
EASY = "object_rel_direction_easy"
HARD = "object_rel_direction_hard"
ORDER = "obj_appearance_order"
ROUTE = "route_planning"

FOUR = ["A. sofa", "B. chair", "C. table", "D. lamp"]
LR = ["A. left", "B. right"]
QUAD = ["A. front-left", "B. front-right", "C. back-left", "D. back-right"]
ORDERS = ["A. lamp, bed, sofa, tv", "B. bed, lamp, sofa, tv", "C. tv, sofa, bed, lamp",
          "D. sofa, tv, lamp, bed"]
TURNS = ["A. Turn Left, Turn Right", "B. Turn Back, Turn Left", "C. Turn Right, Turn Right"]

# (model output, task type, options, expected letter)
CHOICES = [
    ("B", REL, FOUR, "B"),
    ("B.", REL, FOUR, "B"),
    ("(b)", REL, FOUR, "B"),
    ("b", REL, FOUR, "B"),
    ("B. chair", REL, FOUR, "B"),
    ("B) chair", REL, FOUR, "B"),
    ("[C]", REL, FOUR, "C"),
    ("The answer is C", REL, FOUR, "C"),
    ("The answer is (d).", REL, FOUR, "D"),
    ("Answer: A", REL, FOUR, "A"),
    ("**D**", REL, FOUR, "D"),
    ("C<|im_end|>", REL, FOUR, "C"),
    ("D is the closest one to the bed.", REL, FOUR, "D"),
    ("I think it is B.", REL, FOUR, "B"),
    ("A", REL, FOUR, "A"),
    ("A. sofa", REL, FOUR, "A"),
    ("A sofa", REL, FOUR, "A"),          # "A" + option A's text: the letter
    ("A chair", REL, FOUR, "B"),         # "A" is an article here: the chair is option B
    ("The table.", REL, FOUR, "C"),
    ("left", EASY, LR, "A"),
    ("The lamp is to the right of the tv.", EASY, LR, "B"),
    ("back-right", HARD, QUAD, "D"),
    ("Front left", HARD, QUAD, "A"),
    ("lamp, bed, sofa, tv", ORDER, ORDERS, "A"),
    ("Turn Back, Turn Left", ROUTE, TURNS, "B"),
    ("Option C", ROUTE, TURNS, "C"),
    ("B", REL, None, "B"),               # no options given: VSI-Bench's A-D
]

# (model output, task type, expected SI value, expected unit)
NUMBERS = [
    ("1.8", DIST, 1.8, "m"),
    ("1.8 m", DIST, 1.8, "m"),
    ("1.8m.", DIST, 1.8, "m"),
    ("180 cm", DIST, 1.8, "m"),
    ("1800mm", DIST, 1.8, "m"),
    ("`1800` mm", DIST, 1.8, "m"),
    ("The distance is `1543`.", DIST, 1.543, "m"),    # Multi-SpatialMLLM: backticked lengths are mm
    ("6 feet", DIST, 1.8288, "m"),
    ("5'6\"", DIST, 1.6764, "m"),
    ("5 ft 6 in", DIST, 1.6764, "m"),
    ("1 m 20 cm", DIST, 1.2, "m"),
    ("Approximately 2.5 meters.", DIST, 2.5, "m"),
    ("about 3 yards", DIST, 2.7432, "m"),
    ("24 inches", DIST, 0.6096, "m"),
    ("2-3 meters", DIST, 2.5, "m"),
    ("between 2 and 3 m", DIST, 2.5, "m"),
    ("2 m and 3 m", DIST, 2.0, "m"),               # "and" alone is not a range: the first quantity
    ("one and a half meters", DIST, 1.5, "m"),
    ("half a meter", DIST, 0.5, "m"),
    ("The distance between the 2 chairs is 1.5 m", DIST, 1.5, "m"),  # unit wins over a bare count
    ("0,75 m", DIST, 0.75, "m"),
    ("-1.2", DIST, -1.2, "m"),
    ("−2 m", DIST, -2.0, "m"),                     # unicode minus
    ("3/4 m", DIST, 0.75, "m"),
    ("1.2 km", DIST, 1200.0, "m"),
    ("75", SIZE, 0.75, "m"),                       # VSI-Bench asks object sizes in centimetres
    ("75 cm.", SIZE, 0.75, "m"),
    ("0.75 meters", SIZE, 0.75, "m"),
    ("It is about 2 feet tall.", SIZE, 0.6096, "m"),
    ("1,200 mm", SIZE, 1.2, "m"),
    ("20", ROOM, 20.0, "m^2"),
    ("20 square meters", ROOM, 20.0, "m^2"),
    ("20 m²", ROOM, 20.0, "m^2"),
    ("20m^2", ROOM, 20.0, "m^2"),
    ("200 sq ft", ROOM, 18.580608, "m^2"),
    ("5 x 4 m", ROOM, 20.0, "m^2"),
    ("5m by 4m", ROOM, 20.0, "m^2"),
    ("It is 5 m by 4 m, so 20 m² in total.", ROOM, 20.0, "m^2"),
    ("about 25 meters", ROOM, 25.0, "m^2"),          # "square" dropped: still an area
    ("3", COUNT, 3.0, "count"),
    ("three", COUNT, 3.0, "count"),
    ("There are three chairs in the room.", COUNT, 3.0, "count"),
    ("twenty-one", COUNT, 21.0, "count"),
    ("a dozen", COUNT, 12.0, "count"),
    ("half a dozen", COUNT, 6.0, "count"),
    ("a couple of chairs", COUNT, 2.0, "count"),
    ("None.", COUNT, 0.0, "count"),
    ("There are no chairs.", COUNT, 0.0, "count"),
    ("4 chairs and 2 tables", COUNT, 4.0, "count"),
    ("one hundred and five", COUNT, 105.0, "count"),
    ("2.", COUNT, 2.0, "count"),
]

# (model output, task type, options, substring of the reason)
GARBAGE = [
    ("", DIST, None, "empty"),
    ("   <|im_end|>", COUNT, None, "empty"),
    ("I cannot tell from these frames.", DIST, None, "no number"),
    ("No idea", COUNT, None, "no number"),
    ("!!!???", SIZE, None, "no number"),
    ("20 square meters", DIST, None, "measures a area"),
    ("E", REL, FOUR, "letter E is not among the options A-D"),
    ("C.", EASY, LR, "letter C is not among the options A-B"),
    ("Both B and C look close.", REL, FOUR, "ambiguous"),
    ("B or C", REL, FOUR, "ambiguous"),
    ("A, D", REL, FOUR, "ambiguous"),
    ("I don't know", REL, FOUR, "no option letter"),
    ("the bed", REL, FOUR, "no option letter"),
    ("nan", ROOM, None, "no number"),
    ("1e400 m", DIST, None, "out of range"),
]


@pytest.mark.parametrize(("text", "task", "options", "letter"), CHOICES)
def test_choice_answers(text, task, options, letter):
    parsed = parse_answer(text, task, options)
    assert (parsed.kind, parsed.choice_letter, parsed.reason) == ("choice", letter, "")
    assert parsed.choice_index == "ABCD".index(letter)
    assert math.isnan(parsed.value)


@pytest.mark.parametrize(("text", "task", "value", "unit"), NUMBERS)
def test_number_answers(text, task, value, unit):
    parsed = parse_answer(text, task)
    assert (parsed.kind, parsed.unit, parsed.reason) == ("number", unit, "")
    assert parsed.value == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(("text", "task", "options", "reason"), GARBAGE)
def test_unparseable_answers_say_why(text, task, options, reason):
    parsed = parse_answer(text, task, options)
    assert parsed.kind == "none"
    assert reason in parsed.reason
    assert parsed.choice_index == -1 and math.isnan(parsed.value)


def test_table_is_large_enough():
    assert len(CHOICES) + len(NUMBERS) + len(GARBAGE) >= 40


def test_default_unit_overrides_the_task_convention():
    assert parse_answer("`1800`", DIST, default_unit="m").value == 1800.0
    assert parse_answer("450", DIST, default_unit="mm").value == pytest.approx(0.45)
    with pytest.raises(ValueError, match="unknown unit"):
        parse_answer("1", DIST, default_unit="furlong")
    with pytest.raises(ValueError, match="does not measure"):
        parse_answer("1", ROOM, default_unit="m")


def test_open_questions():
    assert parse_answer("Yes, there is a cup on the table.", "open") == ParsedAnswer(
        "text", text="Yes, there is a cup on the table."
    )
    number = parse_answer("roughly 40 cm", None)
    assert (number.kind, number.value, number.unit) == ("number", pytest.approx(0.4), "m")
    bare = parse_answer("7", "open")
    assert (bare.kind, bare.value, bare.unit) == ("number", 7.0, "")


def test_numeric_task_with_options_is_a_choice_with_the_options_value():
    parsed = parse_answer("B", COUNT, ["A. 2", "B. 3", "C. 4"])
    assert (parsed.kind, parsed.choice_letter, parsed.value, parsed.unit) == ("choice", "B", 3.0, "count")


def test_unknown_task_type_is_an_error():
    with pytest.raises(ValueError, match="unknown task type"):
        parse_answer("3", "counting")


def test_non_text_answer():
    assert parse_answer(None, COUNT).reason == "answer is NoneType, not text"  # type: ignore[arg-type]


def test_vsibench_first_token_rule():
    assert vsibench_first_token("B. chair") == "B"
    assert vsibench_first_token("2.5 meters") == "2.5"
    assert vsibench_first_token("The answer is C") == "The"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from([DIST, SIZE, ROOM, COUNT, REL, HARD, "open"]))
def test_parse_answer_never_raises_on_any_text(text, task):
    parsed = parse_answer(text, task, FOUR if task == REL else None)
    assert parsed.kind in ("choice", "number", "text", "none")
    assert (parsed.kind == "none") == bool(parsed.reason)
    if parsed.kind == "number":
        assert math.isfinite(parsed.value)
