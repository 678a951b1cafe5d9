"""Statistics against hand-computed answers."""

import numpy as np
import pytest

from transcoders.autointerp import stats


def test_classification_metrics_by_hand():
    # 4 activating, 4 not. Predictions: TP=3, FN=1, TN=2, FP=2; one unparsed answer.
    activating = [1, 1, 1, 1, 0, 0, 0, 0, 1]
    prediction = [1, 1, 1, 0, 0, 0, 1, 1, None]
    m = stats.classification_metrics(activating, prediction)
    assert m["n"] == 9 and m["n_failed"] == 1
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    # precision 3/5, recall 3/4 -> F1 = 2*3 / (2*3 + 2 + 1)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["auroc"] is None


def test_all_unparsed_is_not_scored():
    m = stats.classification_metrics([1, 0], [None, None], [None, None])
    assert m["n_failed"] == 2
    assert m["accuracy"] is None and m["f1"] is None and m["auroc"] is None


def test_auroc_by_hand():
    # Positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4, 0.9>0.1, 0.4=0.4, 0.4>0.1)
    assert stats.auroc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert stats.auroc([1, 0], [0.0, 1.0]) == 0.0
    assert stats.auroc([1, 1], [0.2, 0.3]) is None
    m = stats.classification_metrics([1, 1, 0, 0], [1, 0, 0, 0], [0.9, 0.4, 0.4, 0.1])
    assert m["auroc"] == pytest.approx(3.5 / 4)


def test_bootstrap_mean_interval():
    x = np.random.default_rng(1).normal(0.7, 0.1, 400)
    ci = stats.bootstrap_mean(list(x) + [None], seed=3)
    assert ci.n == 400 and ci.value == pytest.approx(x.mean())
    # The bootstrap SE of a mean is close to sd / sqrt(n).
    half_width = (ci.high - ci.low) / 2
    assert half_width == pytest.approx(1.96 * x.std() / 20, rel=0.15)
    assert ci == stats.bootstrap_mean(x, seed=3)  # seeded: the same interval again
    # A constant sample has a zero-width interval.
    flat = stats.bootstrap_mean([0.5] * 10)
    assert (flat.low, flat.value, flat.high) == (0.5, 0.5, 0.5)
    assert stats.bootstrap_mean([None]) is None


def test_bootstrap_difference():
    a, b = [0.8, 0.9, 0.85, 0.95], [0.5, 0.55, 0.6]
    d = stats.bootstrap_difference(a, b, seed=0)
    assert d.value == pytest.approx(np.mean(a) - np.mean(b))
    assert 0 < d.low < d.value < d.high
    # Paired: constant difference of 0.1 gives a zero-width interval.
    p = stats.bootstrap_difference([0.3, 0.5, 0.9], [0.2, 0.4, 0.8], paired=True)
    assert p.value == pytest.approx(0.1) and p.low == pytest.approx(0.1) and p.high == pytest.approx(0.1)
    with pytest.raises(ValueError):
        stats.bootstrap_difference([1], [1, 2], paired=True)


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 10, 31):
        for seed in range(5):
            perm = stats.derangement(n, seed)
            assert sorted(perm) == list(range(n))
            assert all(perm[i] != i for i in range(n))
    assert stats.derangement(30, 7) == stats.derangement(30, 7)
    assert stats.derangement(30, 7) != stats.derangement(30, 8)
    with pytest.raises(ValueError):
        stats.derangement(1, 0)
