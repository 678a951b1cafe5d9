"""SAELens's on-disk format (`cfg.json` + `sae_weights.safetensors`), from sparsify SAEs.

SAELens 6.x has a `topk` SAE that computes exactly what sparsify's SAE does: it
subtracts `b_dec` from the input (`apply_b_dec_to_input`), takes the k largest
pre-activations and applies ReLU to them, which gives the same dense latents as
sparsify's ReLU-then-top-k. Its weights are `W_enc` [d_in, d_sae] (sparsify's
`encoder.weight` transposed) and `W_dec` [d_sae, d_in].

SAELens's transcoders (`transcoder`, `skip_transcoder` and their JumpReLU variants)
use a ReLU or a fixed per-latent threshold; a top-k transcoder keeps a different
number of latents per token, which none of them can, so transcoders are refused
(export them to circuit-tracer instead).
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import save_file

from ..atomic import atomic_path, write_json
from ..checkpoints import Checkpoint

SAELENS_VERSION = "6.54.12"
"""The SAELens release the files are written for and tested against."""

WEIGHTS_FILE = "sae_weights.safetensors"


def representable(ckpt: Checkpoint) -> str | None:
    """Why SAELens cannot hold `ckpt` exactly, or None if it can."""
    cfg = ckpt.config()
    if cfg.transcode:
        return (
            "SAELens's transcoders are ReLU or JumpReLU, not top-k; export "
            "transcoders with --to circuit-tracer"
        )
    if cfg.activation != "topk":
        return f"activation '{cfg.activation}' has no SAELens equivalent"
    return None


def hook_name(hookpoint: str) -> str:
    """TransformerLens's name for the activation an SAE at `hookpoint` reads."""
    if m := re.fullmatch(r"layers\.(\d+)\.mlp", hookpoint):
        return f"blocks.{m.group(1)}.hook_mlp_out"
    if m := re.fullmatch(r"layers\.(\d+)", hookpoint):
        return f"blocks.{m.group(1)}.hook_resid_post"
    return hookpoint


def write(ckpt: Checkpoint, out: Path, model: str | None, run: Path) -> dict:
    """Write one SAE in SAELens's format into `out`."""
    coder = ckpt.load("cpu")
    tensors = {
        "W_enc": coder.encoder.weight.T, "b_enc": coder.encoder.bias,
        "W_dec": coder.W_dec, "b_dec": coder.b_dec,
    }  # fmt: skip
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
    cfg = {
        "architecture": "topk",
        "d_in": coder.d_in,
        "d_sae": coder.num_latents,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "k": coder.cfg.k,
        "rescale_acts_by_decoder_norm": False,
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "model_name": model,
            "hook_name": hook_name(ckpt.hookpoint),
            "sparsify_hookpoint": ckpt.hookpoint,
            "source": str(run),
        },
    }
    write_json(out / "cfg.json", cfg)
    return {"hook_name": cfg["metadata"]["hook_name"], "k": coder.cfg.k,
            "num_latents": coder.num_latents}
