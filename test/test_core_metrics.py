# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""VSI-Bench metrics against hand-computed values, including threshold edges and bad predictions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_mllm_ros.core.metrics import (
    MRA_THRESHOLDS,
    aggregate_vsibench,
    exact_choice_accuracy,
    ground_truth_letter,
    mean_relative_accuracy,
    official_score,
    score_question,
)

# (prediction, ground truth, MRA): relative error e meets threshold theta when e <= 1 - theta,
# so MRA = #{theta in 0.50..0.95 : theta <= 1 - e} / 10.
MRA_TABLE = [
    (10.0, 10.0, 1.0),        # e = 0
    (10.5, 10.0, 1.0),        # e = 0.05: edge of theta = 0.95, counts
    (10.6, 10.0, 0.9),        # e = 0.06: theta <= 0.94
    (11.0, 10.0, 0.9),        # e = 0.10: edge of theta = 0.90
    (0.55, 0.5, 0.9),         # e = 0.1, float subtraction gives 0.10000000000000009: still counts
    (13.0, 10.0, 0.5),        # e = 0.30: thetas 0.50..0.70
    (1.3, 1.0, 0.5),          # same, 1.3 - 1.0 = 0.30000000000000004 in floats
    (7.0, 10.0, 0.5),         # under-estimate by 30 %
    (14.0, 10.0, 0.3),        # e = 0.40: thetas 0.50, 0.55, 0.60
    (0.75, 0.5, 0.1),         # e = 0.50 exactly: only theta = 0.50
    (15.0, 10.0, 0.1),
    (5.0, 10.0, 0.1),
    (2.25, 1.5, 0.1),
    (15.01, 10.0, 0.0),       # just past the last edge
    (16.0, 10.0, 0.0),
    (0.0, 10.0, 0.0),         # e = 1
    (-5.0, 10.0, 0.0),        # negative prediction: e = 1.5
    (-10.0, 10.0, 0.0),
    (0.0, 0.0, 1.0),          # zero ground truth: only an exact zero scores
    (0.1, 0.0, 0.0),
    (-0.1, 0.0, 0.0),
    (math.nan, 10.0, 0.0),
    (math.inf, 10.0, 0.0),
    (-math.inf, 10.0, 0.0),
    (None, 10.0, 0.0),
]


def test_there_are_ten_thresholds_from_050_to_095():
    assert MRA_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@pytest.mark.parametrize(("pred", "gt", "expected"), MRA_TABLE)
def test_mean_relative_accuracy_table(pred, gt, expected):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("gt", [-1.0, math.nan, math.inf])
def test_bad_ground_truth_is_an_error(gt):
    with pytest.raises(ValueError, match="ground truth"):
        mean_relative_accuracy(1.0, gt)


def test_exact_choice_accuracy():
    assert exact_choice_accuracy("b", "B") == 1.0
    assert exact_choice_accuracy("C", "B") == 0.0
    assert exact_choice_accuracy("", "B") == 0.0
    assert exact_choice_accuracy(None, "B") == 0.0


def test_ground_truth_letter_forms():
    options = ["A. left", "B. right"]
    forms = ("B", "b", "B.", "(B)", "right", "B. right")
    assert [ground_truth_letter(g, options) for g in forms] == ["B"] * 6
    with pytest.raises(ValueError, match="neither"):
        ground_truth_letter("back", options)


SCORES = [
    ("object_size_estimation", "75 cm", "75", 1.0),         # ground truth in centimetres
    ("object_size_estimation", "0.9 m", "75", 0.7),          # e = 0.2
    ("object_size_estimation", "75", "75", 1.0),             # bare number: centimetres
    ("object_abs_distance", "2 meters", "2.5", 0.7),
    ("object_abs_distance", "250 cm", 2.5, 1.0),
    ("object_abs_distance", "I cannot tell", "2.5", 0.0),
    ("object_counting", "three", "3", 1.0),
    ("object_counting", "4", "3", 0.4),                      # e = 1/3: thetas 0.50..0.65
    ("room_size_estimation", "5 x 4 m", "20", 1.0),
    ("room_size_estimation", "30 square meters", "20", 0.1),
    ("object_rel_distance", "The answer is B", "B", 1.0),
    ("object_rel_distance", "C. table", "B", 0.0),
    ("object_rel_direction_easy", "right", "B", 1.0),
    ("obj_appearance_order", "garbage", "A", 0.0),
]


@pytest.mark.parametrize(("task", "prediction", "gt", "expected"), SCORES)
def test_score_question(task, prediction, gt, expected):
    options = ["A. left", "B. right"] if task == "object_rel_direction_easy" else None
    assert score_question(task, prediction, gt, options) == pytest.approx(expected, abs=1e-12)


def test_strict_vsibench_scoring_uses_the_first_token():
    assert score_question("object_rel_distance", "b. sofa", "B", strict_vsibench=True) == 1.0
    assert score_question("object_rel_distance", "The answer is B", "B", strict_vsibench=True) == 0.0
    assert score_question("object_counting", "3.", "3", strict_vsibench=True) == 1.0
    assert score_question("object_counting", "three", "3", strict_vsibench=True) == 0.0
    with pytest.raises(ValueError, match="finite"):
        score_question("object_counting", "3", "-3", strict_vsibench=True)


def test_score_question_rejects_bad_input():
    with pytest.raises(ValueError, match="no VSI-Bench score"):
        score_question("open", "3", "3")
    with pytest.raises(ValueError, match="not a number"):
        score_question("object_counting", "3", "three")


def test_aggregate_averages_direction_levels_and_tasks():
    rows = [
        {"question_type": "object_counting", "score": 1.0},
        {"question_type": "object_counting", "score": 0.0},
        {"question_type": "object_rel_direction_easy", "score": 1.0},
        {"question_type": "object_rel_direction_easy", "score": 1.0},
        {"question_type": "object_rel_direction_medium", "score": 0.0},
        {"question_type": "object_rel_direction_hard", "score": 1.0},
        {"question_type": "object_rel_direction_hard", "score": math.nan},  # counts as 0
        {"question_type": "room_size_estimation", "prediction": "26 m^2", "ground_truth": "20"},  # e=0.3
    ]
    result = aggregate_vsibench(rows)
    # levels: easy 1.0, medium 0.0, hard 0.5 -> 0.5 (a pooled mean would give 3/5 = 0.6)
    assert result == pytest.approx(
        {"object_counting": 0.5, "room_size_estimation": 0.5, "object_rel_direction": 0.5, "overall": 0.5}
    )
    assert list(result) == ["object_counting", "room_size_estimation", "object_rel_direction", "overall"]


def test_aggregate_overall_is_the_mean_of_task_scores_not_questions():
    rows = [{"question_type": "object_counting", "score": 1.0}] * 9 + [
        {"question_type": "route_planning", "score": 0.0}
    ]
    assert aggregate_vsibench(rows)["overall"] == 0.5


def test_aggregate_edge_cases():
    assert math.isnan(aggregate_vsibench([])["overall"])
    with pytest.raises(ValueError, match="unknown question_type"):
        aggregate_vsibench([{"id": 7, "question_type": "counting", "score": 1.0}])


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e6), st.floats(min_value=0.0, max_value=3.0))
def test_mra_depends_only_on_the_relative_error(gt, relative_error):
    over = mean_relative_accuracy(gt * (1 + relative_error), gt)
    under = mean_relative_accuracy(gt * (1 - relative_error), gt)
    # exact count of thresholds theta with relative_error <= 1 - theta, up to float noise at the edges
    expected = sum(relative_error <= 1 - theta + 1e-9 for theta in MRA_THRESHOLDS) / 10
    assert abs(over - expected) <= 0.1 + 1e-12 and abs(under - expected) <= 0.1 + 1e-12
    assert 0.0 <= over <= 1.0 and 0.0 <= under <= 1.0
    assert mean_relative_accuracy(gt * (1 + relative_error + 0.2), gt) <= over


# Official VSI-Bench rules, cases worked out by hand from the rules (first token split on " ",
# trailing "." stripped, case-insensitive letter match; float() of that token; MRA as the mean of
# abs(p - g) / g <= 1 - linspace(0.5, 0.95, 10) in doubles).
OFFICIAL_CHOICE_CASES = [
    ("B", "B", 1.0),
    ("b", "B", 1.0),            # case-insensitive
    ("B.", "B", 1.0),           # trailing dot stripped
    ("B..", "B", 1.0),          # every trailing dot
    ("B. sofa", "B", 1.0),      # first token only
    ("B\n", "B", 1.0),          # white space around the token is stripped
    ("The answer is B", "B", 0.0),
    ("(C)", "C", 0.0),
    ("C)", "C", 0.0),
    ("B,", "B", 0.0),
    (" B", "B", 0.0),           # a leading space makes the first token empty
    ("B\nC", "B", 0.0),         # only spaces split tokens
    ("", "B", 0.0),
    (None, "B", 0.0),
]


@pytest.mark.parametrize(("prediction", "truth", "expected"), OFFICIAL_CHOICE_CASES)
def test_official_multiple_choice_rule(prediction, truth, expected):
    assert official_score("object_rel_distance", prediction, truth) == expected


OFFICIAL_NUMBER_CASES = [
    ("3", "3", 1.0),
    ("3.", "3", 1.0),
    ("three", "3", 0.0),                # not a float
    ("229.84 meters", "230", 1.0),      # the unit is ignored: 0.16 / 230 is under every limit
    ("1e1", "10", 1.0),
    ("1_000", "1000", 1.0),             # Python's float() accepts digit separators
    ("12,5", "12.5", 0.0),
    ("nan", "3", 0.0),
    ("inf", "3", 0.0),
    ("-3", "3", 0.0),                   # relative error 2
    ("0", "0", 0.0),                    # upstream divides by zero; worst case here
    ("", "3", 0.0),
    (None, "3", 0.0),
    ("13", "10", 0.5),                  # 0.3 <= 1 - 0.7 = 0.30000000000000004: the edge counts
    ("1.3", "1", 0.5),                  # 0.30000000000000004 <= 0.30000000000000004
    ("120", "100", 0.6),                # 0.2 > 1 - 0.8 = 0.19999999999999996: theta 0.8 misses
    ("1.35", "1", 0.3),                 # 0.3500000000000001 > 0.35: theta 0.65 misses
    ("145", "100", 0.1),                # 0.45 > 1 - 0.55 = 0.44999999999999996: only theta 0.5
    ("105", "100", 1.0),                # 0.05 <= 1 - 0.95 = 0.050000000000000044
    ("150", "100", 0.1),                # 0.5 <= 0.5
    ("151", "100", 0.0),
]


@pytest.mark.parametrize(("prediction", "truth", "expected"), OFFICIAL_NUMBER_CASES)
def test_official_mean_relative_accuracy_rule(prediction, truth, expected):
    assert official_score("object_size_estimation", prediction, truth) == pytest.approx(expected, abs=1e-12)


def test_official_and_lenient_disagree_where_upstream_is_strict():
    # the exact edge counts leniently, not officially
    assert score_question("object_counting", "120", "100") == pytest.approx(0.7)
    assert score_question("object_counting", "120", "100", strict_vsibench=True) == pytest.approx(0.6)
    # sentences and units: read leniently, first token officially
    assert score_question("object_rel_distance", "The answer is B", "B") == 1.0
    assert score_question("object_rel_distance", "The answer is B", "B", strict_vsibench=True) == 0.0
    assert score_question("object_size_estimation", "229.84 meters", "230") == 0.0  # 22984 cm
    assert score_question("object_size_estimation", "229.84 meters", "230", strict_vsibench=True) == 1.0
    with pytest.raises(ValueError, match="no VSI-Bench score"):
        official_score("open", "3", "3")
