"""Hookpoints: finding the modules to hook, and what an architecture needs of them."""

from __future__ import annotations

import difflib
import fnmatch

import torch
from natsort import natsorted
from torch import nn
from transformers import PreTrainedModel

from .activations import base_of, module_io
from .architectures import Architecture
from .errors import UserError
from .validation import ConfigError


class HookpointError(UserError, ValueError):
    """A hookpoint that matches no module, or a module an architecture can't use."""


def resolve_hookpoints(model: nn.Module, patterns: list[str]) -> list[str]:
    """Expand names and globs against `base_of(model)`, in natural order; a pattern
    that matches no module is an error naming the closest ones."""
    names = [name for name, _ in base_of(model).named_modules() if name]
    resolved = []
    for pattern in patterns:
        matches = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matches:
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
            hint = f" Closest modules: {', '.join(close)}." if close else ""
            raise HookpointError(f"Hookpoint '{pattern}' matches no module.{hint}")
        resolved.extend(m for m in matches if m not in resolved)
    return natsorted(resolved)


def module_widths(
    model: PreTrainedModel, hookpoints: list[str]
) -> dict[str, tuple[int, int]]:
    """(input width, output width) of each hooked module, from one tiny forward."""
    probe = torch.zeros(1, 4, dtype=torch.long, device=model.device)
    try:
        acts = module_io(model, hookpoints, probe)
    except IndexError as err:
        raise HookpointError(
            "A hooked module received no positional input (it is called with keyword "
            "arguments only), so its input can't be read; hook its parent or a "
            f"submodule instead ({err})"
        ) from err
    return {
        name: (acts[name]["input"].shape[-1], acts[name]["output"].shape[-1])
        for name in hookpoints
    }


def check_applicable(
    arch: Architecture, widths: dict[str, tuple[int, int]], num_latents: int, k: int
) -> None:
    """sparsify's coders decode into the width they encode from, so a transcoder
    needs a module whose input and output widths agree."""
    for hookpoint, (d_in, d_out) in widths.items():
        if arch.reads == "input" and d_in != d_out:
            raise HookpointError(
                f"Architecture '{arch.name}' can't apply to '{hookpoint}': its input "
                f"width {d_in} differs from its output width {d_out}, and sparsify's "
                "coders predict a target as wide as their input."
            )
    if k > num_latents:
        raise ConfigError(
            f"--k {k} is larger than the number of latents ({num_latents}): lower --k "
            "or raise --expansion-factor or --num-latents"
        )
