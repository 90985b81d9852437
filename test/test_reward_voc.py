# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Value-Order Correlation against hand-computed Spearman values (ties, NaN, reversed order)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from spatial_mllm_ros.reward.voc import value_order_correlation


def test_increasing_progress_is_plus_one_and_reversed_is_minus_one():
    progress = [0.0, 0.1, 0.35, 0.6, 0.9, 1.0]
    assert value_order_correlation(progress) == pytest.approx(1.0)
    assert value_order_correlation(progress[::-1]) == pytest.approx(-1.0)


def test_one_swap_of_five_frames():
    # ranks 1,3,2,4,5 vs 1..5: sum d^2 = 2 -> 1 - 6*2 / (5*(25-1)) = 0.9
    assert value_order_correlation([0.0, 0.3, 0.2, 0.4, 1.0]) == pytest.approx(0.9)


def test_ties_get_average_ranks():
    # ranks 1, 2.5, 2.5, 4 vs 1..4: Pearson of ranks = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert value_order_correlation([0.0, 0.5, 0.5, 1.0]) == pytest.approx(3 / math.sqrt(10))
    # ties in the order too (two frames with one stamp)
    assert value_order_correlation([0.1, 0.2, 0.3], order=[0.0, 1.0, 1.0]) == pytest.approx(
        spearmanr([0.1, 0.2, 0.3], [0.0, 1.0, 1.0]).statistic)


def test_nan_frames_are_dropped_before_ranking():
    # frame 1 unparseable: [0, 0.2, 0.1] at order [0, 2, 3] -> ranks 1,3,2 vs 1,2,3 -> 0.5
    assert value_order_correlation([0.0, np.nan, 0.2, 0.1]) == pytest.approx(0.5)


@pytest.mark.parametrize("progress", [[], [0.4], [np.nan, np.nan, 0.3], [0.5, 0.5, 0.5]])
def test_undefined_cases_are_nan(progress):
    assert math.isnan(value_order_correlation(progress))


def test_explicit_order_and_agreement_with_scipy():
    rng = np.random.default_rng(3)
    progress = rng.random(40)
    stamps = np.sort(rng.random(40)) * 10
    assert value_order_correlation(progress, stamps) == pytest.approx(spearmanr(progress, stamps).statistic)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="3 values but order has 2"):
        value_order_correlation([0.1, 0.2, 0.3], order=[0, 1])
    with pytest.raises(ValueError, match="one-dimensional"):
        value_order_correlation(np.zeros((2, 2)))
