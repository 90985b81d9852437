# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Prompt templates and task-type inference on VSI-Bench phrasings and robot-style questions."""

from __future__ import annotations

import pytest

from spatial_mllm_ros.core.prompts import (
    MULTIPLE_CHOICE_TASK_TYPES,
    NUMERIC_TASK_TYPES,
    TASK_TYPES,
    build_prompt,
    format_options,
    infer_task_type,
    split_option,
)

ROUTE_Q = (
    "You are a robot beginning at the bed facing the tv. You want to navigate to the sofa. You will "
    "perform the following actions (Note: for each [please fill in], choose either 'turn back,' "
    "'turn left,' or 'turn right.'): 1. [please fill in] 2. Go forward until the table "
    "3. [please fill in] 4. Go forward until the sofa. You have reached the final destination."
)

CASES = [
    ("How many chair(s) are in this room?", None, "object_counting"),
    ("How many chairs can you see?", None, "object_counting"),
    ("Measuring from the closest point of each object, what is the direct distance between the sofa "
     "and the table (in meters)?", None, "object_abs_distance"),
    ("How far is the fridge from the door?", None, "object_abs_distance"),
    ("What is the length of the longest dimension (length, width, or height) of the bed, measured in "
     "centimeters?", None, "object_size_estimation"),
    ("How tall is the cabinet?", None, "object_size_estimation"),
    ("What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size "
     "of the combined space.", None, "room_size_estimation"),
    ("How many square meters is this room?", None, "room_size_estimation"),
    ("Measuring from the closest point of each object, which of these objects (sofa, table, lamp, tv) "
     "is the closest to the bed?", ["A. sofa", "B. table", "C. lamp", "D. tv"], "object_rel_distance"),
    ("If I am standing by the bed and facing the tv, is the lamp to the left or the right of the tv?",
     ["A. left", "B. right"], "object_rel_direction_easy"),
    ("If I am standing by the bed and facing the tv, is the lamp to my left, right, or back? An object "
     "is to my back if I would have to turn at least 135 degrees in order to face it.",
     ["A. left", "B. right", "C. back"], "object_rel_direction_medium"),
    ("If I am standing by the bed and facing the tv, is the lamp to my front-left, front-right, "
     "back-left, or back-right? The directions refer to the quadrants of a Cartesian plane (if I am "
     "standing at the origin and facing along the positive y-axis).",
     ["A. front-left", "B. front-right", "C. back-left", "D. back-right"], "object_rel_direction_hard"),
    (ROUTE_Q, ["A. Turn Left, Turn Right", "B. Turn Back, Turn Left", "C. Turn Right, Turn Right",
               "D. Turn Left, Turn Left"], "route_planning"),
    ("What will be the first-time appearance order of the following categories in the video: lamp, "
     "bed, sofa, tv?", ["A. lamp, bed, sofa, tv", "B. bed, lamp, sofa, tv", "C. tv, sofa, bed, lamp",
                        "D. sofa, tv, lamp, bed"], "obj_appearance_order"),
    ("Is there anything on the table?", None, "open"),
    ("Which side?", ["front-left", "front-right", "back-left", "back-right"], "object_rel_direction_hard"),
]


@pytest.mark.parametrize(("question", "options", "expected"), CASES)
def test_infer_task_type(question, options, expected):
    assert infer_task_type(question, options) == expected


def test_task_type_sets_partition_the_vsibench_types():
    assert len(TASK_TYPES) == 10
    assert set(TASK_TYPES) == NUMERIC_TASK_TYPES | MULTIPLE_CHOICE_TASK_TYPES
    assert not NUMERIC_TASK_TYPES & MULTIPLE_CHOICE_TASK_TYPES


def test_multiple_choice_prompt_is_the_upstream_template():
    prompt = build_prompt("Which is closest to the bed?", ["sofa", "table", "lamp"], "object_rel_distance")
    assert prompt == (
        "Which is closest to the bed?\nOptions:\nA. sofa\nB. table\nC. lamp\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_prelettered_vsibench_options_are_not_lettered_twice():
    prompt = build_prompt("Left or right?", ["A. left", "B. right"])
    assert "\nA. left\nB. right\n" in prompt
    assert "A. A." not in prompt


def test_numeric_prompt_is_the_upstream_template():
    assert build_prompt("  How many chair(s) are in this room? ") == (
        "How many chair(s) are in this room?\nPlease answer the question using a single word or phrase."
    )


def test_build_prompt_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        build_prompt("   ")
    with pytest.raises(ValueError, match="no options"):
        build_prompt("Which is closest?", None, "object_rel_distance")
    with pytest.raises(ValueError, match="unknown task type"):
        build_prompt("How many?", None, "counting")


def test_split_and_format_options():
    assert split_option("B. chair") == ("B", "chair")
    assert split_option("(c) back-left") == ("C", "back-left")
    assert split_option("left") == (None, "left")
    # wrongly lettered input is re-lettered by position
    assert format_options(["B. x", "y"]) == ["A. x", "B. y"]
