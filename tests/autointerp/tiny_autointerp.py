"""Tiny random models, coders and run directories for the autointerp tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from sparsify import SparseCoder
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from transcoders import architectures

VOCAB = 128
HOOKPOINTS = ("layers.0.mlp", "layers.1.mlp")


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=VOCAB, initializer_range=0.5,
    )
    return LlamaForCausalLM(cfg).eval().requires_grad_(False)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose 128 tokens are `w0` ... `w127`."""
    vocab = {f"w{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0")


def tiny_run(
    root: Path,
    archs=("sae", "transcoder", "skip-transcoder"),
    hookpoints=HOOKPOINTS,
    num_latents: int = 64,
    k: int = 4,
    seed: int = 0,
) -> Path:
    """A run directory of randomly initialised coders, in `transcoders train`'s layout."""
    torch.manual_seed(seed)
    for name in archs:
        cfg = architectures.get(name).coder_config(num_latents=num_latents, k=k)
        for hp in hookpoints:
            coder = SparseCoder(32, cfg)
            # Random encoder biases make latents fire at different rates.
            coder.encoder.bias.data.normal_(0, 0.1)
            coder.save_to_disk(root / name / hp)
    return root


def random_tokens(n_seq: int, ctx_len: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (n_seq, ctx_len), generator=gen)


def tiny_world(root: Path) -> Path:
    """Under `root`: `model/` (a saved tiny model and tokenizer), `text/` (documents in
    its vocabulary) and `run/` (an SAE and a transcoder at layers.1.mlp); returns the run."""
    tok = tiny_tokenizer()
    tok.eos_token = "w1"
    tiny_model().save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "text").mkdir()
    rng = random.Random(0)
    for i in range(3):
        words = [f"w{rng.randrange(2, VOCAB)}" for _ in range(4000)]
        (root / "text" / f"doc{i}.txt").write_text(" ".join(words))
    return tiny_run(root / "run", archs=("sae", "transcoder"), hookpoints=("layers.1.mlp",), num_latents=32)


def tiny_options(root: Path, out: Path, **options) -> dict:
    """AutointerpConfig fields for a run on `tiny_world(root)` that takes seconds."""
    base = dict(
        model=str(root / "model"), dataset=str(root / "text"), split="train", out=str(out),
        n_tokens=4096, ctx_len=32, example_ctx_len=16, batch_size=8, latents=6,
        min_examples=5, n_examples_train=5, n_examples_test=5, n_non_activating=5,
        n_quantiles=1, n_boot=200,
    )
    return {**base, **options}


def cli_args(options: dict) -> list[str]:
    """`tiny_options` as `transcoders autointerp` flags."""
    flags = {"n_tokens": "tokens", "n_examples_train": "train-examples",
             "n_examples_test": "test-examples", "n_non_activating": "non-activating", "architectures": "arch"}
    args = []
    for name, value in options.items():
        flag = "--" + flags.get(name, name.replace("_", "-"))
        args += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return args
