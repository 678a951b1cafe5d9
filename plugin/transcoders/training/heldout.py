"""Held-out FVU of trained coders, for the run manifest."""

from __future__ import annotations

import torch
from datasets import Dataset
from sparsify import SparseCoder
from torch import nn

from ..activations import module_io
from ..architectures import Architecture
from ..evaluation.metrics import Reconstruction


@torch.no_grad()
def heldout_fvu(
    model: nn.Module,
    arch: Architecture,
    coders: dict[str, SparseCoder],
    rows: Dataset,
    batch_size: int,
) -> dict[str, float]:
    """Pooled FVU of each hookpoint's coder on `rows`, reading the site `arch`
    reads (the same formula as `transcoders evaluate`)."""
    scores = {hookpoint: Reconstruction() for hookpoint in coders}
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        input_ids = rows[start : start + batch_size]["input_ids"]
        acts = module_io(model, list(coders), input_ids.to(device))
        for hookpoint, coder in coders.items():
            x = acts[hookpoint][arch.reads].flatten(0, 1).to(coder.dtype)
            y = acts[hookpoint]["output"].flatten(0, 1)
            scores[hookpoint].add(coder(x).sae_out, y)
    return {hookpoint: score.fvu for hookpoint, score in scores.items()}
