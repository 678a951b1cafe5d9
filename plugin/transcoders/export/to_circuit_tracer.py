"""circuit-tracer's transcoder-set layout, from sparsify transcoders.

circuit-tracer 0.5.0 reads `config.yaml` (`model_kind: transcoder_set`, the hooks
its transcoders read and write, the `transcoders:` files) and one
`layer_{i}.safetensors` per layer. Its weight layout is sparsify's: `W_enc` is
[latents, d_model] (sparsify's `encoder.weight`), `W_dec` [latents, d_model],
`W_skip` [d_model, d_model] applied as `x @ W_skip.T`, so tensors are copied, not
transposed. `mlp.hook_in` is the output of the post-attention norm, which is exactly
the input of sparsify's `layers.N.mlp` hookpoint, and `mlp.hook_out` is its output.

The activation is the one thing circuit-tracer 0.5.0 cannot read from the files:
sparsify applies ReLU and then keeps the k largest values, while circuit-tracer's
file loader builds a plain ReLU (or JumpReLU) and its `TopK` class keeps the k
largest pre-activations without a ReLU. `target.load_transcoder_set` therefore sets
each transcoder's activation to ReLU followed by circuit-tracer's own TopK; the
config records it as `activation_function: relu_topk` and `k`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from ..atomic import atomic_path, write_text
from ..checkpoints import Checkpoint
from .source import ExportError, mlp_layer

FEATURE_INPUT_HOOK = "mlp.hook_in"
FEATURE_OUTPUT_HOOK = "mlp.hook_out"
ACTIVATION = "relu_topk"


def representable(ckpt: Checkpoint) -> str | None:
    """Why circuit-tracer cannot hold `ckpt` exactly, or None if it can."""
    cfg = ckpt.config()
    if not cfg.transcode:
        return "an SAE reads the MLP's output; circuit-tracer needs transcoders"
    if cfg.activation != "topk":
        return f"activation '{cfg.activation}' has no circuit-tracer equivalent"
    return None


def layer_tensors(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """One layer's tensors under circuit-tracer's names."""
    coder = ckpt.load("cpu")
    tensors = {
        "W_enc": coder.encoder.weight, "b_enc": coder.encoder.bias,
        "W_dec": coder.W_dec, "b_dec": coder.b_dec,
    }  # fmt: skip
    if coder.W_skip is not None:
        tensors["W_skip"] = coder.W_skip
    return {name: t.detach().float().contiguous() for name, t in tensors.items()}


def write(checkpoints: list[Checkpoint], out: Path, model: str | None, scan: str) -> dict:
    """Write one architecture's transcoders as a circuit-tracer transcoder set."""
    layers = {mlp_layer(c): c for c in checkpoints}
    if len(layers) != len(checkpoints):
        raise ExportError(f"{checkpoints[0].path.parent}: two coders for one MLP layer")
    ks = {c.config().k for c in checkpoints}
    files, widths = [], set()
    for layer, ckpt in sorted(layers.items()):
        tensors = layer_tensors(ckpt)
        widths.add(tensors["W_enc"].shape[0])
        name = f"layer_{layer}.safetensors"
        with atomic_path(out / name) as tmp:
            save_file(tensors, str(tmp))
        files.append(name)
    if len(ks) != 1 or len(widths) != 1:
        raise ExportError(
            f"{checkpoints[0].path.parent}: layers differ in k {sorted(ks)} or latents "
            f"{sorted(widths)}; a circuit-tracer TranscoderSet needs them equal"
        )
    complete = sorted(layers) == list(range(max(layers) + 1))
    config = {
        "model_kind": "transcoder_set",
        "model_name": model,
        "scan": scan,
        "feature_input_hook": FEATURE_INPUT_HOOK,
        "feature_output_hook": FEATURE_OUTPUT_HOOK,
        # Paths relative to this folder; target.load_transcoder_set resolves them.
        "transcoders": files,
        "activation_function": ACTIVATION,
        "k": ks.pop(),
    }
    write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    return {
        "layers": sorted(layers),
        "complete_set": complete,
        "num_latents": widths.pop(),
        "k": config["k"],
        "activation": ACTIVATION,
        "coders": {
            f"{c.architecture.name}/{c.hookpoint}": f"layer_{layer}.safetensors"
            for layer, c in sorted(layers.items())
        },
    }
