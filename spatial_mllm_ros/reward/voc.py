# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""Value-Order Correlation (VOC): how well predicted progress follows the true order of frames.

A demonstration makes progress as time goes on, so a good progress estimator ranks later frames
higher. VOC is the Spearman rank correlation between the predicted progress and the true frame
order: +1 for a perfectly increasing prediction, -1 for a perfectly reversed one, about 0 for noise.
It needs no labels beyond the frame order, which is why it is the standard check for reward models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def value_order_correlation(progress: Sequence[float] | np.ndarray,
                            order: Sequence[float] | np.ndarray | None = None) -> float:
    """Spearman rank correlation between ``progress`` and the true frame ``order``.

    ``order`` defaults to ``0, 1, ..., N-1`` (frames given in time order); pass stamps or true
    progress values to compare against another ordering. Ties in either input get the average of
    the ranks they span (the usual Spearman convention), and the correlation is the Pearson
    correlation of those ranks.

    NaN handling: frames whose predicted progress (or order value) is NaN are dropped before
    ranking, so an unparseable answer neither helps nor hurts. The result is NaN when fewer than
    two frames remain or when either side is constant after dropping (the correlation is undefined
    then; a constant prediction carries no order information).

    Raises:
        ValueError: when the two inputs differ in length or are not one-dimensional.
    """
    predicted = np.asarray(progress, dtype=np.float64)
    if predicted.ndim != 1:
        raise ValueError(f"progress must be one-dimensional, got shape {predicted.shape}")
    truth = (np.arange(predicted.size, dtype=np.float64) if order is None
             else np.asarray(order, dtype=np.float64))
    if truth.shape != predicted.shape:
        raise ValueError(f"progress has {predicted.size} values but order has {truth.size}")
    valid = np.isfinite(predicted) & np.isfinite(truth)
    predicted, truth = predicted[valid], truth[valid]
    if predicted.size < 2 or np.ptp(predicted) == 0.0 or np.ptp(truth) == 0.0:
        return float("nan")
    ranks_predicted = rankdata(predicted, method="average")
    ranks_truth = rankdata(truth, method="average")
    return float(np.corrcoef(ranks_predicted, ranks_truth)[0, 1])
