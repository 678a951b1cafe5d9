"""Confidence intervals for splice-metric differences between architectures.

Every architecture is evaluated on the same held-out rows, so a difference is
paired: one resample of the rows serves both architectures. Rows cut from one
document are not independent, so whole documents are resampled (a cluster
bootstrap); `evaluation.json` records each row's document under `rows`.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError

METRICS = ("fvu", "delta_ce", "kl")
N_BOOT = 10_000


class MissingRowStatisticsError(UserError, ValueError):
    """An evaluation without the per-row statistics a bootstrap needs."""


def clusters(evaluation: dict) -> np.ndarray:
    """Each evaluated row's cluster: its document, or the row itself where the
    evaluation could not tell documents apart."""
    rows = evaluation.get("rows")
    if rows is None:
        raise MissingRowStatisticsError(
            "this evaluation.json has no per-row statistics (written before they "
            "were recorded): rerun `transcoders evaluate` on the run"
        )
    documents = rows.get("documents")
    return np.asarray(documents if documents is not None else range(rows["count"]))


def describe(evaluation: dict) -> str:
    """What a CI from `paired_difference` resamples, for a table's label."""
    groups = clusters(evaluation)
    unit = "document" if evaluation["rows"].get("documents") is not None else "row"
    count = len(np.unique(groups))
    return (
        f"paired bootstrap over {len(groups)} held-out sequences in {count} {unit}"
        + ("s" if count != 1 else "")
    )


def ratio_terms(result: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row numerator and denominator whose sums over rows give `metric`."""
    per_row = result.get("per_row")
    if per_row is None:
        raise MissingRowStatisticsError(
            f"{result['architecture']} at {result['hookpoint']} has no per-row "
            "statistics: rerun `transcoders evaluate` on the run"
        )
    if metric == "fvu":
        return np.asarray(per_row["sse"]), np.asarray(per_row["target_ss"])
    key = {"delta_ce": "delta_nll", "kl": "kl"}[metric]
    numerator = np.asarray(per_row[key])
    return numerator, np.full(len(numerator), float(per_row["predictions"]))


def resample_weights(
    groups: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row as 0..M-1, `[n_boot, M]` times each cluster is drawn
    when M clusters are drawn with replacement)."""
    _, inverse = np.unique(groups, return_inverse=True)
    m = inverse.max() + 1
    draws = np.random.default_rng(seed).integers(m, size=(n_boot, m))
    offsets = (np.arange(n_boot) * m)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * m)
    return inverse, counts.reshape(n_boot, m).astype(np.float64)


def ratio_samples(
    numerator: np.ndarray, denominator: np.ndarray, groups: np.ndarray,
    n_boot: int = N_BOOT, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """Bootstrap replicates of sum(numerator) / sum(denominator), resampling whole
    clusters of rows. The same `groups` and `seed` give the same resamples."""
    inverse, weights = resample_weights(groups, n_boot, seed)
    m = weights.shape[1]
    num = np.bincount(inverse, weights=numerator, minlength=m)
    den = np.bincount(inverse, weights=denominator, minlength=m)
    return (weights @ num) / (weights @ den)


def paired_difference(
    evaluation: dict, a: str, b: str, hookpoint: str, metric: str,
    n_boot: int = N_BOOT, seed: int = 0,
) -> tuple[float, float, float]:  # fmt: skip
    """`metric` of architecture `a` minus that of `b` at `hookpoint`, with a 95%
    percentile interval from a paired cluster bootstrap over the evaluated rows.

    `metric` is `fvu`, `delta_ce` or `kl`; each is a ratio of sums over rows (FVU:
    squared error over target variance; ΔCE and KL: summed over predictions, over
    their count), so every replicate recomputes both ratios on the same resampled
    documents, and the difference of the point values is returned first. With a
    single document there is nothing to resample: the interval is (NaN, NaN).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    results = {
        r["architecture"]: r for r in evaluation["results"] if r["hookpoint"] == hookpoint
    }
    for arch in (a, b):
        if arch not in results:
            raise KeyError(f"no {arch} result at hookpoint {hookpoint!r}")
    groups = clusters(evaluation)
    point, replicates = 0.0, 0.0
    for arch, sign in ((a, 1), (b, -1)):
        numerator, denominator = ratio_terms(results[arch], metric)
        point += sign * numerator.sum() / denominator.sum()
        replicates = replicates + sign * ratio_samples(
            numerator, denominator, groups, n_boot, seed
        )
    if len(np.unique(groups)) < 2:
        return float(point), math.nan, math.nan
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(point), float(low), float(high)
