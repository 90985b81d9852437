# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""RewardAnnotator: the frame-pair call pattern, progress/reward/episode maths, NaN with reasons.

A scripted text generator stands in for the model here because the point is the arithmetic on
known answers (a random tiny model answers noise); the real engine with a tiny checkpoint runs in
test_reward_pipeline.py.
"""

from __future__ import annotations

import math
import re
import threading

import numpy as np
import pytest

from spatial_mllm_ros.core.frames import Frame
from spatial_mllm_ros.reward.annotator import RewardAnnotator, scored_indices

OFFSET = re.compile(r"frame at t = ([0-9.]+) s")


def _trajectory(n, dt=0.5):
    rgb = np.zeros((8, 8, 3), np.uint8)
    return [Frame(stamp=100.0 + i * dt, camera_id="cam", rgb=rgb) for i in range(n)]


class ScriptedGenerator:
    """Answers each prompt from the time offset it names; records the calls."""

    model_id = "scripted"
    max_frames = 16

    def __init__(self, answer_for_offset):
        self.answer_for_offset = answer_for_offset
        self.calls = []

    def generate_text(self, frames, prompts):
        self.calls.append(([f.stamp for f in frames], list(prompts)))
        return [self.answer_for_offset(float(OFFSET.search(p).group(1))) for p in prompts]


def test_progress_mode_pairs_batched_into_calls():
    frames = _trajectory(10)  # true progress of frame k: k / 9, offset 0.5 k seconds
    qa = ScriptedGenerator(lambda t: f"`{round(100 * (t / 0.5) / 9)}`")
    steps = []
    scores = RewardAnnotator(qa, frames_per_call=4).score(frames, "open the drawer",
                                                          progress_callback=lambda d, t: steps.append((d, t)))
    # pairs (0,1..4), (0,5..8), (0,9): 3 calls; each frame set starts with frame 0
    assert [len(stamps) for stamps, _ in qa.calls] == [5, 5, 2]
    assert [len(prompts) for _, prompts in qa.calls] == [4, 4, 1]
    assert all(stamps[0] == 100.0 for stamps, _ in qa.calls)
    assert qa.calls[1][0] == [100.0, 102.5, 103.0, 103.5, 104.0]
    assert 'task: "open the drawer"' in qa.calls[0][1][0] and "t = 0.50 s" in qa.calls[0][1][0]
    assert steps == [(1, 10), (5, 10), (9, 10), (10, 10)]
    expected = np.round(100 * np.arange(10) / 9) / 100
    np.testing.assert_allclose(scores.progress, expected)
    np.testing.assert_allclose(scores.reward, np.concatenate([[0.0], np.diff(expected)]))
    assert scores.episode_score == pytest.approx(1.0)
    assert scores.voc == pytest.approx(1.0)
    assert scores.model_calls == 3 and scores.error == "" and scores.reasons == [""] * 10
    assert scores.raw_answers[0] == "" and scores.raw_answers[9] == "`100`"
    assert list(scores.frame_indices) == list(range(10)) and scores.method == "progress/scripted"
    np.testing.assert_allclose(scores.stamps, 100.0 + 0.5 * np.arange(10))


def test_reversed_progress_has_voc_minus_one():
    qa = ScriptedGenerator(lambda t: f"{100 - 10 * t:.0f}%")  # 95, 90, ... decreasing
    scores = RewardAnnotator(qa).score(_trajectory(6), "stack the cups")
    # the reference frame is 0 by definition, so drop it to see the model's own ordering
    assert scores.voc < 0
    from spatial_mllm_ros.reward.voc import value_order_correlation
    assert value_order_correlation(scores.progress[1:]) == pytest.approx(-1.0)


def test_stride_always_scores_the_last_frame():
    assert scored_indices(10, 3) == [0, 3, 6, 9]
    assert scored_indices(11, 3) == [0, 3, 6, 9, 10]
    assert scored_indices(1, 5) == [0]
    qa = ScriptedGenerator(lambda t: "`50`")
    scores = RewardAnnotator(qa).score(_trajectory(11), "wipe", stride=3)
    assert list(scores.frame_indices) == [0, 3, 6, 9, 10] and len(qa.calls) == 1
    assert scores.stride == 3


def test_unparseable_answer_is_nan_with_a_reason_never_zero():
    answers = {1.0: "`20`", 1.5: "I cannot tell from these frames", 2.0: "`60`"}
    qa = ScriptedGenerator(lambda t: answers.get(t, "`10`"))
    scores = RewardAnnotator(qa).score(_trajectory(5), "push the box")  # offsets 0.5 .. 2.0
    assert math.isnan(scores.progress[3]) and math.isnan(scores.values[3])
    assert "unparseable" in scores.reasons[3] and "cannot tell" in scores.reasons[3]
    assert scores.raw_answers[3] == "I cannot tell from these frames"
    assert math.isnan(scores.reward[3]) and math.isnan(scores.reward[4])
    assert scores.reward[2] == pytest.approx(0.1)
    assert scores.episode_score == pytest.approx(0.6)
    assert scores.num_invalid == 1 and "frame 3" in scores.error and "1 of 5 frames" in scores.error


def test_all_answers_unparseable_gives_nan_score():
    scores = RewardAnnotator(ScriptedGenerator(lambda t: "hmm")).score(_trajectory(3), "x")
    assert scores.progress[0] == 0.0 and np.isnan(scores.progress[1:]).all()
    assert scores.episode_score == 0.0  # the reference frame is the only valid value
    assert math.isnan(scores.voc)


def test_displacement_mode_with_and_without_target():
    true_mm = {0.5: 40, 1.0: 90, 1.5: 150, 2.0: 260}
    qa = ScriptedGenerator(lambda t: f"The box moved `{true_mm[t]}` mm.")
    annotator = RewardAnnotator(qa, subject="the box")
    with_target = annotator.score(_trajectory(5), "push the box 20 cm", mode="displacement", target=0.2)
    np.testing.assert_allclose(with_target.values, [0, 0.04, 0.09, 0.15, 0.26])
    np.testing.assert_allclose(with_target.progress, [0, 0.2, 0.45, 0.75, 1.0])  # 0.26/0.2 clipped
    assert "How far did the box move" in qa.calls[0][1][0] and "millimetres" in qa.calls[0][1][0]
    normalised = annotator.score(_trajectory(5), "push the box", mode="displacement")
    np.testing.assert_allclose(normalised.progress, np.array([0, 40, 90, 150, 260]) / 260)
    assert normalised.value_unit == "m" and normalised.voc == pytest.approx(1.0)


def test_cancel_stops_before_the_next_call():
    cancel = threading.Event()
    qa = ScriptedGenerator(lambda t: "`50`")

    def on_progress(done, total):
        if done > 1:
            cancel.set()

    scores = RewardAnnotator(qa, frames_per_call=2).score(_trajectory(8), "x", progress_callback=on_progress,
                                                          cancel_event=cancel)
    assert len(qa.calls) == 1 and scores.cancelled
    assert scores.reasons[3:] == ["cancelled"] * 5 and np.isnan(scores.progress[3:]).all()
    assert scores.error.startswith("cancelled after scoring 3 of 8 frames")


def test_failed_model_call_marks_its_frames():
    class Failing(ScriptedGenerator):
        def generate_text(self, frames, prompts):
            if len(self.calls) == 1:
                self.calls.append(None)
                raise RuntimeError("out of memory")
            return super().generate_text(frames, prompts)

    scores = RewardAnnotator(Failing(lambda t: "`30`"), frames_per_call=2).score(_trajectory(5), "x")
    assert scores.reasons[1:3] == ["", ""]
    assert scores.reasons[3] == "model call failed: RuntimeError: out of memory"
    assert np.isnan(scores.progress[3:]).all() and scores.model_calls == 2
    assert scores.model_failure == ""  # some calls worked: the episode's answers still count

    class Broken(ScriptedGenerator):
        def generate_text(self, frames, prompts):
            raise ValueError("no model loaded")

    broken = RewardAnnotator(Broken(None), frames_per_call=2).score(_trajectory(5), "x")
    assert broken.model_failure == "model call failed: ValueError: no model loaded"


def test_naive_pattern_sends_one_prompt_per_call_on_the_same_frame_sets():
    qa = ScriptedGenerator(lambda t: "`50`")
    batched = RewardAnnotator(qa, frames_per_call=3).score(_trajectory(7), "x")
    batched_calls = list(qa.calls)
    qa.calls.clear()
    naive = RewardAnnotator(qa, frames_per_call=3, batch_queries=False).score(_trajectory(7), "x")
    assert [len(p) for _, p in qa.calls] == [1] * 6
    assert [s for s, _ in qa.calls] == [batched_calls[0][0]] * 3 + [batched_calls[1][0]] * 3
    np.testing.assert_array_equal(naive.progress, batched.progress)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"frames": []}, "empty trajectory"),
    ({"instruction": " "}, "instruction"),
    ({"mode": "speed"}, "mode must be one of"),
    ({"stride": 0}, "stride"),
    ({"mode": "displacement", "target": -1.0}, "target"),
    ({"target": 0.3}, "only applies to mode 'displacement'"),
    ({"frames": _trajectory(3)[::-1]}, "time order"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, message):
    call = {"frames": _trajectory(3), "instruction": "x", **kwargs}
    with pytest.raises(ValueError, match=message):
        RewardAnnotator(ScriptedGenerator(lambda t: "1")).score(**call)
