# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The reward annotator end to end on the real engine with a tiny random checkpoint.

A random model answers noise, so these tests check what must hold for any model: every scored
frame has either a progress value in [0, 1] or a reason, rewards and the episode score follow from
the progress, VOC is the Spearman correlation of that progress, encoding once + batching gives the
same answers as naive per-query encoding, and strided scores give every frame a value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatial_mllm_ros.engine import SpatialQA
from spatial_mllm_ros.model.tiny import make_tiny_checkpoint
from spatial_mllm_ros.reward.annotator import RewardAnnotator, rewards_from_progress
from spatial_mllm_ros.reward.episodes import dense_signals
from spatial_mllm_ros.reward.synthetic import push_trajectory
from spatial_mllm_ros.reward.voc import value_order_correlation

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), preset="tiny")


@pytest.fixture(scope="module")
def qa(checkpoint):
    engine = SpatialQA(checkpoint, selector="uniform", max_frames=4, max_new_tokens=8)
    yield engine
    engine.close()


def _check_invariants(scores, n_scored):
    assert scores.progress.shape == scores.reward.shape == scores.stamps.shape == (n_scored,)
    assert len(scores.raw_answers) == len(scores.reasons) == n_scored
    rows = zip(scores.progress[1:], scores.reasons[1:], scores.raw_answers[1:], strict=True)
    for value, reason, raw in rows:
        if math.isnan(value):
            assert reason, "a NaN progress must say why"
        else:
            assert reason == "" and 0.0 <= value <= 1.0
            assert raw  # a value came from a real answer
    assert scores.progress[0] == 0.0 and scores.reasons[0] == ""
    np.testing.assert_array_equal(np.isnan(scores.reward), np.isnan(rewards_from_progress(scores.progress)))
    np.testing.assert_allclose(scores.reward, rewards_from_progress(scores.progress), equal_nan=True)
    finite = scores.progress[np.isfinite(scores.progress)]
    assert scores.episode_score == finite[-1]
    voc = value_order_correlation(scores.progress, scores.frame_indices)
    assert (math.isnan(voc) and math.isnan(scores.voc)) or voc == pytest.approx(scores.voc)


def test_progress_mode_end_to_end_on_a_known_trajectory(qa):
    trajectory = push_trajectory(9)
    scores = RewardAnnotator(qa).score(trajectory.frames, "push the red box to the right", stride=2)
    assert list(scores.frame_indices) == [0, 2, 4, 6, 8]
    # pairs (0,2), (0,4), (0,6) in one call of 4 frames, then (0,8): 2 calls with max_frames=4
    assert scores.model_calls == 2
    _check_invariants(scores, 5)
    np.testing.assert_allclose(scores.stamps, [trajectory.frames[i].stamp for i in (0, 2, 4, 6, 8)])
    # the true order of this trajectory is the frame order: VOC of the truth itself is +1
    assert value_order_correlation(trajectory.true_progress) == pytest.approx(1.0)


def test_displacement_mode_end_to_end(qa):
    trajectory = push_trajectory(5)
    scores = RewardAnnotator(qa, subject="the red box").score(trajectory.frames, "push the red box",
                                                              mode="displacement", target=0.3)
    _check_invariants(scores, 5)
    assert scores.value_unit == "m" and scores.method.startswith("displacement/")


def test_encoding_once_and_batching_gives_the_naive_answers(checkpoint, qa):
    frames = push_trajectory(7).frames
    batched = RewardAnnotator(qa).score(frames, "push the box")
    naive_qa = SpatialQA(checkpoint, selector="uniform", max_frames=4, max_new_tokens=8, cache_bytes=0)
    try:
        naive = RewardAnnotator(naive_qa, batch_queries=False).score(frames, "push the box")
    finally:
        naive_qa.close()
    assert batched.model_calls == 2 and naive.model_calls == 6
    assert batched.raw_answers == naive.raw_answers
    np.testing.assert_array_equal(batched.progress, naive.progress)


def test_strided_scores_become_a_value_for_every_frame(qa):
    scores = RewardAnnotator(qa).score(push_trajectory(7).frames, "push the box", stride=3)
    progress, reward, valid = dense_signals(7, scores.frame_indices, scores.progress)
    assert progress.dtype == reward.dtype == np.float32 and progress.shape == reward.shape == (7,)
    assert np.isfinite(progress).all() and np.isfinite(reward).all()
    finite = np.isfinite(scores.progress)
    assert list(valid) == list(scores.frame_indices[finite])
    np.testing.assert_array_equal(progress[valid], scores.progress[finite].astype(np.float32))
    # next.reward: the step from each frame to the next, 0 at the last; it sums to the progress gained
    assert reward[-1] == 0.0
    assert float(reward.sum()) == pytest.approx(float(progress[-1] - progress[0]), abs=1e-6)


def test_interpolation_between_scored_frames_and_after_the_last_valid_one():
    progress, reward, valid = dense_signals(7, [0, 3, 6], [0.0, 0.6, np.nan])
    np.testing.assert_allclose(progress, [0.0, 0.2, 0.4, 0.6, 0.6, 0.6, 0.6], atol=1e-7)
    np.testing.assert_allclose(reward, [0.2, 0.2, 0.2, 0.0, 0.0, 0.0, 0.0], atol=1e-7)
    assert list(valid) == [0, 3]


def test_streamed_scoring_makes_the_calls_and_answers_of_scoring_the_list(qa):
    """Scored as they arrive (one call's frames held), the answers are those of the whole list."""
    frames = push_trajectory(11).frames
    annotator = RewardAnnotator(qa)
    whole = annotator.score(frames, "push the box", stride=2)
    kept = [(i, frames[i]) for i in whole.frame_indices]
    streamed = annotator.score_streamed(iter(kept), "push the box")
    assert streamed.model_calls == whole.model_calls == 2  # 5 pairs, 3 per call with max_frames=4
    assert streamed.raw_answers == whole.raw_answers and streamed.reasons == whole.reasons
    np.testing.assert_array_equal(streamed.frame_indices, whole.frame_indices)
    np.testing.assert_array_equal(streamed.progress, whole.progress)
    np.testing.assert_array_equal(streamed.stamps, whole.stamps)
    assert streamed.error == whole.error
    lone = annotator.score_streamed(iter(kept[:1]), "push the box")
    assert lone.model_calls == 0 and list(lone.progress) == [0.0]
    with pytest.raises(ValueError, match="positions must increase"):
        annotator.score_streamed(iter([kept[1], kept[0]]), "push the box")
