"""Held-out FVU of trained coders, for the run manifest."""

from __future__ import annotations

import torch
from datasets import Dataset
from sparsify import SparseCoder
from torch import Tensor, nn

from ..activations import module_io
from ..architectures import Architecture


class FVU:
    """Fraction of variance unexplained, pooled over every token and dimension:
    sum of squared errors / sum of squared deviations of the target from its mean.
    Accumulated in float64 so that many batches add up exactly enough."""

    def __init__(self) -> None:
        self.sq_err = 0.0
        self.total = 0.0
        self.sq_total = 0.0
        self.count = 0
        self.sum: Tensor | None = None

    def update(self, target: Tensor, prediction: Tensor) -> None:
        y = target.flatten(0, -2).double()
        self.sq_err += (y - prediction.flatten(0, -2).double()).pow(2).sum().item()
        self.sq_total += y.pow(2).sum().item()
        batch_sum = y.sum(0)
        self.sum = batch_sum if self.sum is None else self.sum + batch_sum
        self.count += y.shape[0]

    def compute(self) -> float:
        assert self.sum is not None and self.count > 0, "no tokens seen"
        variance = self.sq_total - self.sum.pow(2).sum().item() / self.count
        return self.sq_err / variance


@torch.no_grad()
def heldout_fvu(
    model: nn.Module,
    arch: Architecture,
    coders: dict[str, SparseCoder],
    rows: Dataset,
    batch_size: int,
) -> dict[str, float]:
    """FVU of each hookpoint's coder on `rows`, reading the site `arch` reads."""
    scores = {hookpoint: FVU() for hookpoint in coders}
    for start in range(0, len(rows), batch_size):
        input_ids = rows[start : start + batch_size]["input_ids"]
        device = next(model.parameters()).device
        acts = module_io(model, list(coders), input_ids.to(device))
        for hookpoint, coder in coders.items():
            x = acts[hookpoint][arch.reads].flatten(0, 1).to(coder.dtype)
            y = acts[hookpoint]["output"].flatten(0, 1)
            scores[hookpoint].update(y, coder(x).sae_out)
    return {hookpoint: score.compute() for hookpoint, score in scores.items()}
