"""Replacing modules' outputs during a forward pass, and checking hookpoints first."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..activations import first_tensor, module_io

Replacement = Callable[[Tensor, Tensor], Tensor]
"""Maps the module's (input, output) activations to the output to use instead."""


class HookpointError(ValueError):
    """A hookpoint the model lacks, or whose width does not fit a checkpoint."""


def base_of(model: nn.Module) -> nn.Module:
    return getattr(model, "base_model", model)


@contextmanager
def splice(model: nn.Module, replacements: Mapping[str, Replacement]) -> Iterator[None]:
    """While active, each hookpoint's output is replaced by `fn(input, output)`.

    Hookpoints are module names relative to `model.base_model`. The module itself
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


def check_hookpoints(model: nn.Module, hookpoints: list[str], model_name: str) -> None:
    """Raise `HookpointError` naming any hookpoint the model lacks, with suggestions."""
    names = [n for n, _ in base_of(model).named_modules() if n]
    for hookpoint in hookpoints:
        if hookpoint in names:
            continue
        close = difflib.get_close_matches(hookpoint, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise HookpointError(
            f"Model '{model_name}' has no module '{hookpoint}'; hookpoints are "
            f"module names relative to the model's base_model.{hint}"
        )


def widths(model: nn.Module, hookpoints: list[str], input_ids: Tensor) -> dict:
    """`{hookpoint: {"input": width, "output": width}}` from one short forward."""
    io = module_io(model, hookpoints, input_ids)
    return {h: {site: t.shape[-1] for site, t in io[h].items()} for h in hookpoints}
