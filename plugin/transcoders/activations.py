"""Reading a module's input and output activations with forward hooks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from .architectures import Site


def first_tensor(x) -> Tensor:
    """Modules pass tuples around; the activation is the first element."""
    return x[0] if isinstance(x, tuple) else x


def base_of(model: nn.Module) -> nn.Module:
    """The module hookpoints are named under: a transformers model's `base_model`
    (the layer stack without the LM head), or `model` itself."""
    return getattr(model, "base_model", model)


@contextmanager
def record(
    model: nn.Module, hookpoints: list[str]
) -> Iterator[dict[str, dict[Site, Tensor]]]:
    """While active, each forward pass fills `store[hookpoint]["input"|"output"]`.

    Hookpoints are module names relative to `base_of(model)`.
    """
    base = base_of(model)
    store: dict[str, dict[Site, Tensor]] = {}

    def hook_for(name: str):
        def hook(module, inputs, outputs):
            store[name] = {
                "input": first_tensor(inputs).detach(),
                "output": first_tensor(outputs).detach(),
            }

        return hook

    handles = [
        base.get_submodule(name).register_forward_hook(hook_for(name))
        for name in hookpoints
    ]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def module_io(
    model: nn.Module, hookpoints: list[str], input_ids: Tensor
) -> dict[str, dict[Site, Tensor]]:
    """One forward pass; returns each hookpoint's input and output activations."""
    with record(model, hookpoints) as store:
        model(input_ids)
    return dict(store)
