"""Statistics for autointerp scores: per-latent metrics, bootstrap confidence
intervals, architecture differences, and the shuffled-explanation control's pairing.

Plain numpy; every random draw takes an explicit seed so a rerun reports the same
intervals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .. import formatting


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random
    negative, ties counting one half. None unless both classes are present."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def classification_metrics(
    activating: Sequence[bool],
    prediction: Sequence[bool | None],
    probability: Sequence[float | None] | None = None,
) -> dict:
    """Accuracy, balanced accuracy and F1 of a latent's yes/no predictions, plus AUROC
    where every parsed prediction has a probability.

    Predictions that are None (the scorer could not parse the model's answer) are left
    out of every metric and counted in `n_failed`; all metrics are None when nothing
    parsed.
    """
    ok = [i for i, p in enumerate(prediction) if p is not None]
    out = {"n": len(prediction), "n_failed": len(prediction) - len(ok)}
    y = np.array([bool(activating[i]) for i in ok], dtype=bool)
    p = np.array([bool(prediction[i]) for i in ok], dtype=bool)
    if not ok:
        return {**out, "accuracy": None, "balanced_accuracy": None, "f1": None, "auroc": None}

    tp, tn = int((p & y).sum()), int((~p & ~y).sum())
    fp, fn = int((p & ~y).sum()), int((~p & y).sum())
    rates = [tp / (tp + fn)] if tp + fn else []
    rates += [tn / (tn + fp)] if tn + fp else []
    f1_denominator = 2 * tp + fp + fn
    probs = [probability[i] for i in ok] if probability is not None else []
    has_probs = bool(probs) and all(q is not None for q in probs)
    return {
        **out,
        "accuracy": (tp + tn) / len(ok),
        "balanced_accuracy": float(np.mean(rates)),
        "f1": 2 * tp / f1_denominator if f1_denominator else 0.0,
        "auroc": auroc(y, probs) if has_probs else None,
    }


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{formatting.interval(self.value, self.low, self.high)} (n={self.n})"


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def bootstrap_mean(
    values: Sequence[float | None], *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval | None:
    """Mean with a percentile bootstrap interval over latents (None values dropped)."""
    x = _clean(values)
    if len(x) == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(x.mean()), float(low), float(high), len(x))


def bootstrap_difference(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    paired: bool = False,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """mean(a) - mean(b) with a percentile bootstrap interval.

    Unpaired (the default) resamples each group on its own: two architectures are
    scored on different latents. Paired resamples index pairs together, for two scores
    of the same latents (a real explanation against its shuffled control); then a and b
    must have the same length, and pairs with a None are dropped.
    """
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    if paired:
        if len(a) != len(b):
            raise ValueError(f"Paired samples differ in length: {len(a)} vs {len(b)}")
        keep = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
        d = np.array([a[i] - b[i] for i in keep], dtype=float)
        if len(d) == 0:
            return None
        boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
        low, high = np.percentile(boots, [tail, 100 - tail])
        return Interval(float(d.mean()), float(low), float(high), len(d))

    x, y = _clean(a), _clean(b)
    if len(x) == 0 or len(y) == 0:
        return None
    boots = (
        x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
        - y[rng.integers(0, len(y), (n_boot, len(y)))].mean(axis=1)
    )
    low, high = np.percentile(boots, [tail, 100 - tail])
    return Interval(float(x.mean() - y.mean()), float(low), float(high), min(len(x), len(y)))


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman rank correlation of the pairs where both values are present (ties get
    their average rank); None with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    keep = [i for i in range(len(x)) if x[i] is not None and y[i] is not None]
    xs, ys = np.array([x[i] for i in keep], float), np.array([y[i] for i in keep], float)
    if len(keep) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    return float(spearmanr(xs, ys).statistic)


FREQUENCY_BINS = 5
"""Bins of the frequency-matched comparison: equal-count bins of the two groups'
pooled firing frequencies (quintiles)."""
MIN_PER_BIN = 2
"""Latents each group needs in a bin for the bin to be compared."""


@dataclass(frozen=True)
class MatchedDifference(Interval):
    """A frequency-matched difference of means with its bootstrap interval."""

    bins: int = 0
    """Bins compared (each with `MIN_PER_BIN` latents of both groups)."""
    coverage: float = 0.0
    """Fraction of the pooled latents that lie in the compared bins."""


def frequency_matched_difference(
    a: Sequence[float | None],
    a_frequency: Sequence[float],
    b: Sequence[float | None],
    b_frequency: Sequence[float],
    *,
    n_bins: int = FREQUENCY_BINS,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> MatchedDifference | None:
    """mean(a) - mean(b) among latents of equal firing frequency, with a bootstrap
    interval: the difference two groups would show with the same frequency mix.

    Binning rule: edges at the `n_bins`-quantiles of the pooled frequencies of both
    groups' scored latents (equal-count bins; tied edges merge). In each bin where both
    groups have at least `MIN_PER_BIN` latents, the difference of the groups' means;
    these are averaged with weights proportional to the bin's pooled count, i.e.
    re-weighted to the pooled frequency distribution. Bins where one group is (almost)
    absent are left out and reported through `coverage`. The interval resamples each
    group's latents within each compared bin (bin edges and weights fixed): unpaired,
    the groups' latents are different ones. None when no bin can be compared.
    """
    def clean(scores, freqs):
        keep = [(s, f) for s, f in zip(scores, freqs) if s is not None and np.isfinite(s)]
        return np.array([s for s, _ in keep], float), np.array([f for _, f in keep], float)

    (xa, fa), (xb, fb) = clean(a, a_frequency), clean(b, b_frequency)
    pooled = np.concatenate([fa, fb])
    if len(xa) == 0 or len(xb) == 0:
        return None
    inner = np.unique(np.quantile(pooled, np.linspace(0, 1, n_bins + 1)[1:-1]))
    ba, bb = np.searchsorted(inner, fa, side="right"), np.searchsorted(inner, fb, side="right")
    cells = []
    for k in range(len(inner) + 1):
        ya, yb = xa[ba == k], xb[bb == k]
        if len(ya) >= MIN_PER_BIN and len(yb) >= MIN_PER_BIN:
            cells.append((ya, yb, len(ya) + len(yb)))
    if not cells:
        return None
    weights = np.array([n for _, _, n in cells], float)
    weights /= weights.sum()
    value = float(sum(w * (ya.mean() - yb.mean()) for w, (ya, yb, _) in zip(weights, cells)))
    rng = np.random.default_rng(seed)

    def resampled_means(y):
        return y[rng.integers(0, len(y), (n_boot, len(y)))].mean(axis=1)

    boots = sum(w * (resampled_means(ya) - resampled_means(yb)) for w, (ya, yb, _) in zip(weights, cells))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boots, [tail, 100 - tail])
    used = sum(n for _, _, n in cells)
    return MatchedDifference(
        value, float(low), float(high), min(sum(len(c[0]) for c in cells), sum(len(c[1]) for c in cells)),
        bins=len(cells), coverage=used / len(pooled),
    )


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: position i takes item result[i], never
    itself. Used to give each latent another latent's explanation."""
    if n < 2:
        raise ValueError(f"A shuffled control needs at least 2 latents, got {n}")
    rng = np.random.default_rng(seed)
    # Sattolo's algorithm: a uniformly random single n-cycle, so never a fixed point.
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm
