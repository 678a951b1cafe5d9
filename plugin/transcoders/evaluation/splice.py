"""Replacing modules' outputs during a forward pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..activations import base_of, first_tensor

Replacement = Callable[[Tensor, Tensor], Tensor]
"""Maps the module's (input, output) activations to the output to use instead."""


@contextmanager
def splice(model: nn.Module, replacements: Mapping[str, Replacement]) -> Iterator[None]:
    """While active, each hookpoint's output is replaced by `fn(input, output)`.

    Hookpoints are module names relative to `base_of(model)`. The module itself
    still runs, so `fn` sees its true output on the (possibly already spliced)
    input it receives.
    """
    base = base_of(model)

    def hook_for(fn: Replacement):
        def hook(module, inputs, outputs):
            out = first_tensor(outputs)
            new = fn(first_tensor(inputs), out).to(out.dtype).view_as(out)
            return (new, *outputs[1:]) if isinstance(outputs, tuple) else new

        return hook

    handles = [
        base.get_submodule(name).register_forward_hook(hook_for(fn))
        for name, fn in replacements.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def zero_ablation(inputs: Tensor, outputs: Tensor) -> Tensor:
    return torch.zeros_like(outputs)
