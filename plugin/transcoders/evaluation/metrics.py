"""The metric math: running sums over batches, turned into numbers at the end.

Every accumulator sums in float64, so a long evaluation gives the same answer as
one big batch would, up to float rounding of the inputs themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

HISTOGRAM_BINS_PER_DECADE = 2


def next_token_nll(logits: Tensor, input_ids: Tensor) -> Tensor:
    """Per-position cross-entropy of predicting token t+1 from positions <= t,
    shape `[batch, seq - 1]`."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        input_ids[:, 1:].flatten(),
        reduction="none",
    ).view(input_ids.shape[0], -1)


def next_token_kl(clean_logp: Tensor, logits: Tensor) -> Tensor:
    """KL(clean || other) at each of the same positions as `next_token_nll`.

    `clean_logp` is the clean run's log-softmax over the whole sequence.
    """
    logp = logits[:, :-1].float().log_softmax(-1)
    return F.kl_div(logp, clean_logp[:, :-1], log_target=True, reduction="none").sum(-1)


@dataclass
class Mean:
    """A running mean of per-token values `[rows, positions]`, also kept as one sum
    per row for the bootstrap."""

    total: float = 0.0
    count: int = 0
    row_sums: list[float] = field(default_factory=list)

    def add(self, values: Tensor) -> None:
        sums = values.double().flatten(1).sum(1)
        self.total += sums.sum().item()
        self.count += values.numel()
        self.row_sums += sums.tolist()

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else math.nan


@dataclass
class Reconstruction:
    """Pooled fraction of variance unexplained of predictions `[tokens, d]`.

    FVU = sum over tokens and dims of (y - y_hat)^2, divided by the sum over tokens
    and dims of (y - mean_y)^2, where mean_y is the per-dimension mean over every
    token added. Both sums are kept as running totals, so batching does not change
    the result.
    """

    sse: float = 0.0
    n: int = 0
    sum_y: Tensor | None = None
    sum_y2: Tensor | None = None

    def add(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.double(), target.double()
        self.sse += (target - pred).pow(2).sum().item()
        self.n += target.shape[0]
        s, s2 = target.sum(0).cpu(), target.pow(2).sum(0).cpu()
        self.sum_y = s if self.sum_y is None else self.sum_y + s
        self.sum_y2 = s2 if self.sum_y2 is None else self.sum_y2 + s2

    @property
    def total_variance(self) -> float:
        if self.sum_y is None:
            return math.nan
        return (self.sum_y2 - self.sum_y.pow(2) / self.n).sum().item()

    @property
    def fvu(self) -> float:
        return self.sse / self.total_variance if self.n else math.nan


@dataclass
class RowReconstruction(Reconstruction):
    """`Reconstruction` of predictions `[rows, positions, d]` that also keeps each
    row's share of both sums, so FVU can be bootstrapped as a ratio of sums over
    resampled rows."""

    row_sse: list[float] = field(default_factory=list)
    row_sum_y: list[Tensor] = field(default_factory=list)
    row_sum_y2: list[float] = field(default_factory=list)
    row_positions: list[int] = field(default_factory=list)

    def add(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.double().view_as(target), target.double()
        super().add(pred.flatten(0, 1), target.flatten(0, 1))
        self.row_sse += (target - pred).pow(2).sum((1, 2)).tolist()
        self.row_sum_y += list(target.sum(1).cpu())
        self.row_sum_y2 += target.pow(2).sum((1, 2)).tolist()
        self.row_positions += [target.shape[1]] * target.shape[0]

    def row_target_ss(self) -> list[float]:
        """Each row's sum over positions and dims of (y - mean_y)^2, with mean_y the
        mean over all rows: these add up to `total_variance`. A bootstrap keeps
        mean_y at this full-sample value (re-estimating it per resample would move
        the denominator by a relative O(1 / positions))."""
        if self.sum_y is None:
            return []
        mean = self.sum_y / self.n
        sum_y = torch.stack(self.row_sum_y)
        positions = torch.tensor(self.row_positions, dtype=torch.float64)
        sum_y2 = torch.tensor(self.row_sum_y2, dtype=torch.float64)
        return (sum_y2 - 2 * sum_y @ mean + positions * mean.dot(mean)).tolist()


@dataclass
class Latents:
    """How often each latent is active (nonzero among the top-k) over the tokens."""

    num_latents: int
    fired: Tensor = field(init=False)
    tokens: int = 0

    def __post_init__(self) -> None:
        self.fired = torch.zeros(self.num_latents, dtype=torch.long)

    def add(self, top_acts: Tensor, top_indices: Tensor) -> None:
        """`top_acts`, `top_indices`: `[tokens, k]` from sparsify's encoder."""
        active = top_indices[top_acts != 0]
        self.fired += torch.bincount(active, minlength=self.num_latents).cpu()
        self.tokens += top_acts.shape[0]

    @property
    def l0(self) -> float:
        """Mean number of active latents per token."""
        return self.fired.sum().item() / self.tokens if self.tokens else math.nan

    @property
    def dead_fraction(self) -> float:
        """Fraction of latents never active on any token."""
        return (self.fired == 0).double().mean().item()

    def histogram(self) -> dict:
        return firing_histogram(self.fired, self.tokens)


def firing_histogram(fired: Tensor, tokens: int) -> dict:
    """Histogram of latent firing frequencies (fires / tokens) in log10-spaced bins.

    Bins run from the decade holding 1/tokens (the rarest possible nonzero
    frequency) up to 1, `HISTOGRAM_BINS_PER_DECADE` per decade; the last bin includes
    1. Dead latents (frequency 0) have no place on a log axis and are counted apart.
    """
    freq = fired.double().numpy() / tokens
    low = math.floor(math.log10(1 / tokens))
    edges = np.logspace(low, 0, -low * HISTOGRAM_BINS_PER_DECADE + 1)
    counts, _ = np.histogram(freq[freq > 0], bins=edges)
    return {
        "bin_edges": edges.tolist(),
        "counts": counts.tolist(),
        "dead": int((freq == 0).sum()),
    }


def loss_recovered(ce_clean: float, ce_spliced: float, ce_zero: float) -> float:
    """(CE_zero - CE_spliced) / (CE_zero - CE_clean): 1 is a perfect splice, 0 is no
    better than deleting the module; NaN if deleting it changes nothing."""
    denom = ce_zero - ce_clean
    return (ce_zero - ce_spliced) / denom if denom != 0 else math.nan
