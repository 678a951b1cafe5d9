"""Running the subject model only as deep as the hooked modules need.

Training with the FVU loss reads activations at the hookpoints and ignores the
logits, so the layers after the last hooked one and the LM head are wasted work.
"""

from __future__ import annotations

import copy
import re

from sparsify.utils import get_layer_list
from torch import nn
from transformers import PreTrainedModel

from ..activations import base_of


def last_layer_needed(model: PreTrainedModel, hookpoints: list[str]) -> int | None:
    """Index of the deepest layer a hookpoint lives in; None if one lies outside
    the layer stack (then the whole model is needed)."""
    layers_name, _ = get_layer_list(model)
    pattern = re.compile(rf"^{re.escape(layers_name)}\.(\d+)(\.|$)")
    indices = []
    for name in hookpoints:
        match = pattern.match(name)
        if match is None:
            return None
        indices.append(int(match.group(1)))
    return max(indices)


def truncated(model: PreTrainedModel, hookpoints: list[str]) -> PreTrainedModel:
    """The base model cut after the last hooked layer, sharing its weights.

    The result is a shallow copy: the original model is untouched and no weights
    are copied. Returns `base_of(model)` uncut when a hookpoint lies outside the
    layer stack, or when the layer stack is nested (e.g. `decoder.layers`).
    """
    base = base_of(model)
    layers_name, layers = get_layer_list(model)
    last = last_layer_needed(model, hookpoints)
    if last is None or "." in layers_name:
        return base

    cut = copy.copy(base)
    cut._modules = dict(base._modules)
    setattr(cut, layers_name, nn.ModuleList(layers[: last + 1]))
    cut.config = copy.copy(base.config)
    cut.config.num_hidden_layers = last + 1
    cut.config.use_cache = False
    return cut
