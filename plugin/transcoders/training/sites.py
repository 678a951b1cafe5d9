"""Stand-ins for the subject model that hand sparsify's Trainer its activations.

sparsify's Trainer hooks the modules named by its hookpoints under
`model.base_model` and reads their input and output. A `SiteModel` puts a `_Site`
at each of those names and calls it with the activations it chooses (recorded ones,
or scaled ones), so the Trainer's own hooks see exactly those.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..architectures import Site

Scales = dict[str, dict[Site, float]]
"""Hookpoint -> the factor each of its activations is multiplied by."""


class _Site(nn.Module):
    """Stands where a hooked module was; returns the output it is given."""

    def forward(self, input: Tensor, output: Tensor) -> Tensor:
        return output


class SiteModel(nn.Module):
    """A module with a `_Site` at every hookpoint; `feed` shows the Trainer one
    hookpoint's activations, multiplied by `scales` (1 where none is given)."""

    def __init__(
        self,
        model: nn.Module,
        hookpoints: list[str],
        scales: Scales | None = None,
    ):
        super().__init__()
        self.config = model.config
        self._device = next(model.parameters()).device
        self.hookpoints = hookpoints
        self.scales = scales or {}
        for name in hookpoints:
            parent = self
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, _Site())

    @property
    def base_model(self) -> "SiteModel":
        """sparsify looks hookpoints up under `base_model`; they are here."""
        return self

    @property
    def device(self) -> torch.device:
        """The device the activations are on."""
        return self._device

    def feed(self, name: str, input: Tensor, output: Tensor) -> None:
        """Call hookpoint `name`'s site with its (scaled) activations."""
        scale = self.scales.get(name)
        if scale is not None:
            input, output = input * scale["input"], output * scale["output"]
        self.get_submodule(name)(input, output)
