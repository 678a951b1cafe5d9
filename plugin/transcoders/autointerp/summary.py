"""The autointerp summary (`summary.json`): what `summarise` computes from the
per-latent results, its typed form, and `interval`, the one reader of its intervals.

Every interval is stored flat as three keys, `<name>`, `<name>_low` and
`<name>_high`; only this module spells those names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, NamedTuple

import pandas as pd

from . import stats
from .config import AutointerpConfig

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
"""The summary's `groups`, one row each."""
LATENTS_CSV = "latents.csv"
"""One row per latent, scorer and control: what the summary is computed from."""
# The number each scorer is summarised by: the paper reports balanced accuracy for
# detection and fuzzing; the embedding scorer gives similarities, so AUROC.
HEADLINE = {"detection": "balanced_accuracy", "fuzzing": "balanced_accuracy", "embedding": "auroc"}
METRICS = ("accuracy", "balanced_accuracy", "f1", "auroc")
# The intervals of a group, per metric, by kind: the mean score of the real and of the
# shuffled explanations, and their difference paired by latent.
GROUP_KINDS = {"real": "", "shuffled": "shuffled_", "real_minus_shuffled": "real_minus_shuffled_"}
# The intervals of a comparison of two architectures, of its one metric.
COMPARISON_KINDS = ("a_minus_b", "matched_a_minus_b")


class Bounds(NamedTuple):
    """A mean or a difference of means with its 95% bootstrap interval."""

    value: float
    low: float
    high: float


def interval(row: Mapping[str, Any], metric: str, kind: str = "real") -> Bounds | None:
    """One interval of a `groups` or `comparisons` row of a summary; None when the row
    has none (nothing scored, no control, no comparable bin).

    Group rows: `kind` is one of `GROUP_KINDS`, `metric` one of `METRICS`. Comparison
    rows: `kind` is one of `COMPARISON_KINDS` and `metric` the row's own `metric`.
    """
    name = kind if kind in COMPARISON_KINDS else GROUP_KINDS[kind] + metric
    if row.get(name) is None:
        return None
    return Bounds(row[name], row[f"{name}_low"], row[f"{name}_high"])


def _flat(name: str, bounds: Bounds | None) -> dict:
    if bounds is None:
        return {name: None, f"{name}_low": None, f"{name}_high": None}
    return {name: bounds.value, f"{name}_low": bounds.low, f"{name}_high": bounds.high}


def _bounds(iv: stats.Interval | None) -> Bounds | None:
    return None if iv is None else Bounds(iv.value, iv.low, iv.high)


@dataclass
class LatentCount:
    """What one coder's latent cache says about its latents."""

    architecture: str
    hookpoint: str
    latents: int
    cache_tokens: int
    """Tokens cached: the window over which latents count as dead."""
    live: int
    dead_fraction: float
    eligible: int
    """Live latents with enough examples to be sampled."""
    eligible_fraction: float | None
    """Eligible among the live; None with no live latent."""
    eligible_fraction_of_all: float


@dataclass
class Group:
    """One (architecture, hookpoint, scorer): means with bootstrap CIs of every metric."""

    architecture: str
    hookpoint: str
    scorer: str
    latents: int
    """Latents scored with their own explanation."""
    headline: str
    """The metric the scorer is summarised by (`HEADLINE`)."""
    failed_predictions: int
    predictions: int
    spearman_frequency: float | None
    """Spearman correlation of firing frequency with the headline score."""
    intervals: dict[tuple[str, str], Bounds | None]
    """By (kind, metric), for every kind of `GROUP_KINDS` and metric of `METRICS`."""

    def to_dict(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "intervals"}
        for metric in METRICS:
            for kind in GROUP_KINDS:
                row.update(_flat(GROUP_KINDS[kind] + metric, self.intervals[kind, metric]))
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Group:
        scalars = {f.name: row[f.name] for f in fields(cls) if f.name != "intervals"}
        intervals = {(k, m): interval(row, m, k) for m in METRICS for k in GROUP_KINDS}
        return cls(**scalars, intervals=intervals)


@dataclass
class Comparison:
    """Two architectures' headline means at one (hookpoint, scorer), raw and
    frequency-matched (`stats.frequency_matched_difference`)."""

    hookpoint: str
    scorer: str
    metric: str
    a: str
    b: str
    interval: str
    """How the intervals were resampled."""
    a_minus_b: Bounds | None
    matched_a_minus_b: Bounds | None
    matched_bins: int
    """Frequency bins compared; 0 when none could be."""
    matched_coverage: float | None
    """Fraction of the pooled latents in the compared bins."""

    def to_dict(self) -> dict:
        row = {k: getattr(self, k) for k in ("hookpoint", "scorer", "metric", "a", "b", "interval")}
        for kind in COMPARISON_KINDS:
            row.update(_flat(kind, getattr(self, kind)))
        return {**row, "matched_bins": self.matched_bins, "matched_coverage": self.matched_coverage}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Comparison:
        scalars = {f.name: row[f.name] for f in fields(cls) if f.name not in COMPARISON_KINDS}
        return cls(**scalars, **{k: interval(row, row["metric"], k) for k in COMPARISON_KINDS})


@dataclass
class FailedExplanations:
    """How many of one coder's explanations could not be parsed (and were not scored)."""

    architecture: str
    hookpoint: str
    explained: int
    failed_parse: int


@dataclass
class Summary:
    """The content of `summary.json`."""

    latent_counts: list[LatentCount]
    groups: list[Group]
    comparisons: list[Comparison]
    failed_explanations: list[FailedExplanations]
    config: dict | None = None
    """The run's `AutointerpConfig`, as a dict."""

    def to_dict(self) -> dict:
        out = {
            "latent_counts": [asdict(c) for c in self.latent_counts],
            "groups": [g.to_dict() for g in self.groups],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "failed_explanations": [asdict(f) for f in self.failed_explanations],
        }
        return out if self.config is None else {**out, "config": self.config}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            [LatentCount(**c) for c in data["latent_counts"]],
            [Group.from_dict(g) for g in data["groups"]],
            [Comparison.from_dict(c) for c in data["comparisons"]],
            [FailedExplanations(**f) for f in data["failed_explanations"]],
            data.get("config"),
        )


def summarise(df: pd.DataFrame, cfg: AutointerpConfig) -> Summary:
    """Per (architecture, hookpoint): the cache's latent counts (dead over the cached
    tokens, eligible among live). Per (architecture, hookpoint, scorer): means with
    bootstrap CIs of every metric for real and shuffled explanations, real minus
    shuffled (paired by latent), and the Spearman correlation of firing frequency with
    the headline score. Per (hookpoint, scorer) and pair of architectures: the raw and
    the frequency-matched difference of headline means (unpaired: different latents)."""
    groups, comparisons = [], []
    counts = _latent_counts(df)
    if df.empty or "scorer" not in df:
        return Summary(counts, groups, comparisons, _failed(df))
    scored = df[df["scorer"].notna()].astype({"shuffled": bool})
    boot = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    for (arch, hp, scorer), g in scored.groupby(["architecture", "hookpoint", "scorer"], sort=True):
        real = g[~g["shuffled"]].set_index("latent")
        ctrl = g[g["shuffled"]].set_index("latent")
        headline = HEADLINE[scorer]
        intervals = {}
        for metric in METRICS:
            r = stats.bootstrap_mean(_values(real[metric]), **boot)
            c = stats.bootstrap_mean(_values(ctrl[metric]), **boot)
            common = real.index.intersection(ctrl.index)
            d = stats.bootstrap_difference(
                _values(real.loc[common, metric]), _values(ctrl.loc[common, metric]),
                paired=True, **boot,
            ) if len(common) else None
            for kind, iv in zip(GROUP_KINDS, (r, c, d)):
                intervals[kind, metric] = _bounds(iv)
        groups.append(Group(
            arch, hp, scorer, latents=len(real), headline=headline,
            failed_predictions=int(real["n_failed"].sum()), predictions=int(real["n"].sum()),
            spearman_frequency=stats.spearman(_values(real["frequency"]), _values(real[headline])),
            intervals=intervals,
        ))

        for other in scored[(scored["hookpoint"] == hp) & (scored["scorer"] == scorer)]["architecture"].unique():
            if other <= arch:
                continue
            o = scored[(scored["architecture"] == other) & (scored["hookpoint"] == hp)
                       & (scored["scorer"] == scorer) & ~scored["shuffled"]]
            d = stats.bootstrap_difference(_values(real[headline]), _values(o[headline]), **boot)
            m = stats.frequency_matched_difference(
                _values(real[headline]), _values(real["frequency"]),
                _values(o[headline]), _values(o["frequency"]), **boot,
            )
            comparisons.append(Comparison(
                hp, scorer, headline, arch, other, interval="unpaired bootstrap over latents",
                a_minus_b=_bounds(d), matched_a_minus_b=_bounds(m),
                matched_bins=m.bins if m else 0, matched_coverage=m.coverage if m else None,
            ))
    return Summary(counts, groups, comparisons, _failed(df))


def _latent_counts(df: pd.DataFrame) -> list[LatentCount]:
    """Per (architecture, hookpoint), from the cache: latents, the tokens cached, dead
    (never fired on them), and eligible for sampling, among the live and among all."""
    if df.empty:
        return []
    out = []
    for (arch, hp), g in df.groupby(["architecture", "hookpoint"], sort=True):
        first = g.iloc[0]
        n, live, eligible = int(first["n_latents"]), int(first["live_latents"]), int(first["eligible_latents"])
        out.append(LatentCount(
            arch, hp, latents=n, cache_tokens=int(first["cache_tokens"]), live=live,
            dead_fraction=1 - live / n, eligible=eligible,
            eligible_fraction=eligible / live if live else None,
            eligible_fraction_of_all=eligible / n,
        ))
    return out


def _failed(df: pd.DataFrame) -> list[FailedExplanations]:
    if df.empty:
        return []
    per = df.drop_duplicates(["architecture", "hookpoint", "latent"])
    return [
        FailedExplanations(a, h, explained=len(g), failed_parse=int((~g["explanation_parsed"]).sum()))
        for (a, h), g in per.groupby(["architecture", "hookpoint"])
    ]


def _values(series: pd.Series) -> list[float | None]:
    return [None if v is None or pd.isna(v) else float(v) for v in series]


def control_warnings(summary: Mapping[str, Any] | None) -> list[str]:
    """One line per (architecture, hookpoint, scorer) whose real explanations do not
    score clearly above the shuffled control (the paired 95% interval reaches zero):
    there the scores measure nothing about the explanations."""
    lines = []
    for g in (summary or {}).get("groups", []):
        d = interval(g, g["headline"], "real_minus_shuffled")
        if d is not None and d.low > 0:
            continue
        bound = "not computed: no control was scored" if d is None else f"lower bound {d.low:.3f}"
        lines.append(
            f"{g['architecture']} at {g['hookpoint']}: {g['scorer']} scores of real "
            f"explanations are not clearly above the shuffled control (real − shuffled "
            f"{bound}); they measure nothing about these explanations."
        )
    return lines
