"""A tiny random Llama, a character tokenizer, a text corpus and hand-built coders.

The "exact" coders are real sparsify `SparseCoder`s whose weights make them
reproduce a linear module exactly, so evaluation can be checked against answers
known from the maths: with latents relu(x) and relu(-x), relu(x_i) - relu(-x_i) =
x_i, so decoding them through +-W gives W x, with exactly one latent of each pair
active per coordinate (L0 = d).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from sparsify import SparseCoder
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from transcoders import architectures

D = 32
VOCAB = 128
# The hookpoint where exact coders are possible: a square Linear (no bias), since
# intermediate_size == hidden_size.
LINEAR = "layers.0.mlp.down_proj"
MLP = "layers.1.mlp"
WORDS = "to be or not that is the question whether tis nobler in mind suffer".split()


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=D,
        intermediate_size=D,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=VOCAB,
        # Larger than the default 0.02 so the MLPs visibly matter to the loss.
        initializer_range=0.2,
    )
    return LlamaForCausalLM(cfg).eval().requires_grad_(False)


def char_tokenizer(text: str) -> PreTrainedTokenizerFast:
    chars = sorted(set(text))
    vocab = {"<eos>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>"
    )


def write_corpus(folder: Path, files: int = 3, words: int = 600) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        (folder / f"doc{i}.txt").write_text(text)
    return folder


def save_model_dir(folder: Path) -> Path:
    """A loadable model directory: tiny Llama plus a tokenizer over WORDS' chars."""
    tiny_model().save_pretrained(folder)
    char_tokenizer(" ".join(WORDS)).save_pretrained(folder)
    return folder


def random_ids(rows: int, seq: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (rows, seq), generator=gen)


def _coder(arch: str, num_latents: int, k: int) -> SparseCoder:
    cfg = architectures.get(arch).coder_config(num_latents=num_latents, k=k)
    return SparseCoder(D, cfg)


@torch.no_grad()
def exact_coder(arch: str, weight: torch.Tensor, dead: int = 0) -> SparseCoder:
    """A coder reproducing `y = weight @ x` exactly (SAE: reproducing y itself), plus
    `dead` latents that can never fire (zero weights, negative bias)."""
    coder = _coder(arch, 2 * D + dead, k=2 * D)
    eye = torch.eye(D)
    coder.encoder.weight.zero_()
    coder.encoder.weight[: 2 * D] = torch.cat([eye, -eye])
    coder.encoder.bias.zero_()
    coder.encoder.bias[2 * D :] = -1.0
    coder.b_dec.zero_()
    coder.W_dec.zero_()
    decode = eye if architectures.get(arch).reads == "output" else weight.T
    if coder.W_skip is not None:
        coder.W_skip.copy_(weight)
    else:
        coder.W_dec[: 2 * D] = torch.cat([decode, -decode])
    return coder


@torch.no_grad()
def zero_coder(arch: str) -> SparseCoder:
    """A coder whose prediction is exactly zero: random encoder, zero decoder."""
    torch.manual_seed(1)
    coder = _coder(arch, 4 * D, k=8)
    coder.W_dec.zero_()
    coder.b_dec.zero_()
    if coder.W_skip is not None:
        coder.W_skip.zero_()
    return coder


@torch.no_grad()
def random_coder(arch: str, seed: int = 0) -> SparseCoder:
    torch.manual_seed(seed)
    coder = _coder(arch, 4 * D, k=8)
    coder.W_dec.normal_(0, 0.3)
    coder.b_dec.normal_(0, 0.1)
    if coder.W_skip is not None:
        coder.W_skip.normal_(0, 0.1)
    return coder


def save_run(run: Path, coders: dict[tuple[str, str], SparseCoder]) -> Path:
    """`{(arch, hookpoint): coder}` saved in `transcoders train`'s layout."""
    for (arch, hookpoint), coder in coders.items():
        coder.save_to_disk(run / arch / hookpoint)
    return run


# What sparsify's SaeConfig held before PR #49 (Feb 2025), when `transcode` was a
# TrainConfig field: a transcoder's cfg.json says nothing about transcoding.
PRE_PR49_FIELDS = ("expansion_factor", "normalize_decoder", "num_latents", "k", "multi_topk",
                   "skip_connection")  # fmt: skip


def save_old_format(coder: SparseCoder, folder: Path) -> Path:
    """Save `coder` as a sparsify of before Feb 2025 did: no `transcode` key."""
    coder.save_to_disk(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    old = {k: cfg[k] for k in PRE_PR49_FIELDS} | {"multi_topk": False, "d_in": cfg["d_in"]}
    (folder / "cfg.json").write_text(json.dumps(old))
    return folder


@torch.no_grad()
def legacy_coder(arch: str, weight: torch.Tensor, b_dec: torch.Tensor) -> SparseCoder:
    """A transcoder (or skip transcoder) in the legacy computation: it reproduces
    `y = weight @ x` exactly only when it encodes `W_enc (x − b_dec) + b_enc`, as
    sparsify's transcoders did before Feb 2025; without that centring it is off by
    (1 − skip share) · weight @ b_dec.

    Latent pairs relu(±(x + s)) decode through ±(1 − α)·weight, the skip term adds
    α·weight @ x and b_dec is added back; s = −weight⁻¹ b_dec / (1 − α) cancels it."""
    alpha = 0.5 if architectures.get(arch).coder_defaults.get("skip_connection") else 0.0
    coder = _coder(arch, 2 * D, k=2 * D)
    eye = torch.eye(D)
    shift = -torch.linalg.solve(weight, b_dec) / (1 - alpha)
    coder.encoder.weight.copy_(torch.cat([eye, -eye]))
    coder.encoder.bias.copy_(torch.cat([b_dec + shift, -b_dec - shift]))
    coder.b_dec.copy_(b_dec)
    decode = (1 - alpha) * weight.T
    coder.W_dec.copy_(torch.cat([decode, -decode]))
    if coder.W_skip is not None:
        coder.W_skip.copy_(alpha * weight)
    return coder
