"""Training on normalised activations, saved as plain sparsify checkpoints.

A transcoder reads the MLP's input and predicts its output, whose scales can differ
by an order of magnitude (SmolLM2-135M's layer-6 MLP: mean squared norm 8.8 in,
715 out). sparsify's sign-SGD moves every weight by the same step whatever the
scale, so the decoder of such a transcoder cannot reach its target's scale in a
short run and many latents never fire. Normalising puts input and target on the
same footing, for every architecture alike.

The rule: each activation (a hookpoint's input or output) is multiplied by the power
of two nearest, on a log scale, to sqrt(width / mean squared norm), the mean taken
over the first `SCALE_BATCHES` training batches. Every coordinate then has a mean
square between 1/2 and 2. Powers of two make the fold below exact in floating
point, so a resumed run unfolds its checkpoint to bit-identical weights.

The fold: a coder trained on (s_in·x, s_out·y) computes, on raw activations, the
same function as the coder whose encoder weight is multiplied by s_in/s_out, whose
encoder bias and b_dec are divided by s_out and whose W_skip is multiplied by
s_in/s_out; W_dec is untouched, so an SAE's decoder rows keep unit norm. TopK is
positively homogeneous, so each latent's activation is the trained one over
s_out: latents are measured in raw output units.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder
from torch import Tensor, nn

from ..activations import module_io
from ..architectures import Architecture, Site
from .sites import Scales, SiteModel

SCALE_BATCHES = 8
"""Training batches the scales are estimated on."""

def scale_of(acts: Tensor) -> float:
    """The power of two that gives `acts` (..., width) a mean square of about one."""
    flat = acts.flatten(0, -2).double()
    mean_square = flat.pow(2).sum(-1).mean().item() / flat.shape[-1]
    if not math.isfinite(mean_square) or mean_square <= 0:
        raise ValueError("cannot normalise activations that are all zero or not finite")
    return 2.0 ** round(-0.5 * math.log2(mean_square))


def estimate_scales(model: nn.Module, hookpoints: list[str], batches: list[Tensor]) -> Scales:
    """Each hookpoint's input and output scale, over `batches` of token ids."""
    parts: dict[str, dict[Site, list[Tensor]]] = {h: {"input": [], "output": []} for h in hookpoints}
    for ids in batches:
        acts = module_io(model, hookpoints, ids)
        for h in hookpoints:
            for site in ("input", "output"):
                parts[h][site].append(acts[h][site])
    return {
        h: {site: scale_of(torch.cat(chunks)) for site, chunks in sites.items()}
        for h, sites in parts.items()
    }


def coder_scales(arch: Architecture, scales: Scales) -> dict[str, tuple[float, float]]:
    """Hookpoint -> (s_in, s_out) for a coder of `arch`: the scale of what it reads
    and of the output it predicts."""
    return {h: (s[arch.reads], s["output"]) for h, s in scales.items()}


def fold(tensors: dict[str, Tensor], s_in: float, s_out: float) -> dict[str, Tensor]:
    """Weights of a coder trained on (s_in·x, s_out·y) as a coder of raw (x, y)."""
    factors = {
        "encoder.weight": s_in / s_out,
        "encoder.bias": 1 / s_out,
        "b_dec": 1 / s_out,
        "W_skip": s_in / s_out,
    }
    return {name: t * factors.get(name, 1.0) for name, t in tensors.items()}


def fold_file(path: Path, s_in: float, s_out: float) -> None:
    """Fold the weights of a saved coder in place (`path`/sae.safetensors)."""
    file = path / "sae.safetensors"
    with safe_open(file, framework="pt") as f:
        metadata = f.metadata()
    save_file(fold(load_file(file), s_in, s_out), file, metadata=metadata)


@torch.no_grad()
def unfold_(coder: SparseCoder, s_in: float, s_out: float) -> None:
    """Undo `fold` on a loaded coder, in place: back to training scale, exactly."""
    state = fold(coder.state_dict(), 1 / s_in, 1 / s_out)
    coder.load_state_dict(state)


class ScaledLive(SiteModel):
    """The subject model, seen by sparsify through sites that hand its Trainer each
    hookpoint's activations multiplied by their scales."""

    def __init__(self, model: nn.Module, scales: Scales):
        super().__init__(model, list(scales), scales)
        self.model = model

    @property
    def dummy_inputs(self) -> dict[str, Tensor]:
        """sparsify probes widths with a forward on these."""
        return self.model.dummy_inputs

    def forward(self, input_ids: Tensor, **_) -> None:
        """Run the model, then feed each hookpoint's scaled activations to its site."""
        acts = module_io(self.model, self.hookpoints, input_ids)
        for name in self.hookpoints:
            self.feed(name, acts[name]["input"], acts[name]["output"])
