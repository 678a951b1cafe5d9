"""Presets: the embedded offline default up to the paper's GPU-scale runs.

Every field but the name, description and model config can be overridden from
the command line (`--field value`, e.g. `--train-tokens 50000`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from transcoders import validation
from transcoders.errors import UserError
from transcoders.training.config import DEFAULTS as TRAINING_DEFAULTS

RUNS = Path("runs")
"""Where every preset's work and results go by default, relative to the current
folder; git ignores it, so running a reproduction never dirties a checkout."""


@dataclass(frozen=True)
class Preset:
    """One reproduction setting: what to train, evaluate and interpret. Training
    settings default to `transcoders train`'s."""

    name: str
    description: str

    model: str = TRAINING_DEFAULTS.model
    """Subject model: `embedded`, a hub id or a local path."""

    dataset: str = TRAINING_DEFAULTS.dataset
    """Corpus: `embedded`, a HF dataset id or a local folder of text files."""

    dataset_split: str = TRAINING_DEFAULTS.dataset_split
    """HF split for training rows (ignored by embedded/local corpora)."""

    eval_split: str = TRAINING_DEFAULTS.eval_split
    """HF split for held-out rows (ignored by embedded/local corpora)."""

    hookpoints: tuple[str, ...] = tuple(TRAINING_DEFAULTS.hookpoints)
    """Module names or globs relative to the model's base_model."""

    architectures: tuple[str, ...] = tuple(TRAINING_DEFAULTS.architectures)

    k: int = TRAINING_DEFAULTS.k
    expansion_factor: int = TRAINING_DEFAULTS.expansion_factor
    num_latents: int = TRAINING_DEFAULTS.num_latents
    """Exact latent count; 0 means `expansion_factor` × width."""

    train_tokens: int = TRAINING_DEFAULTS.tokens
    """Training tokens per architecture."""

    normalize: bool = TRAINING_DEFAULTS.normalize
    """Train on normalised activations, folded into the saved weights (`transcoders
    train --normalize`); the same for every architecture."""

    auxk_alpha: float = TRAINING_DEFAULTS.auxk_alpha
    """Weight of sparsify's AuxK loss on dead latents; 0 is off."""

    dead_tokens: int = TRAINING_DEFAULTS.dead_tokens
    """Tokens without firing after which AuxK treats a latent as dead."""

    k_decay_steps: int = TRAINING_DEFAULTS.k_decay_steps
    """Steps of sparsify's k schedule; 0 is off."""

    ctx_len: int = TRAINING_DEFAULTS.ctx_len
    batch_size: int = TRAINING_DEFAULTS.batch_size
    eval_tokens: int = TRAINING_DEFAULTS.eval_tokens
    """Held-out tokens for splice evaluation (and the manifest's FVU)."""

    explainer: str = "top-tokens"
    """Autointerp explainer: `top-tokens` or a client spec (`local:...`, `vllm:...`,
    `http://host:port/v1@model`)."""

    scorers: tuple[str, ...] = ("embedding",)
    scorer_model: str | None = None
    """Judge for detection/fuzzing; None means the explainer's client."""

    latents: int = 100
    """Latents interpreted per architecture and hookpoint. With 30, the SAE's
    real-minus-shuffled interval straddled zero on the embedded preset; 100 resolves
    it (see the autointerp guide)."""

    autointerp_tokens: int = 65_536
    """Tokens the latents are cached on."""

    autointerp_ctx_len: int = 64
    """Tokens per cached sequence; a multiple of `example_ctx_len`."""

    example_ctx_len: int = 8
    """Tokens per example shown to the explainer and the judges (Delphi and the
    paper: 32; the offline embedding scorer separates best at 8, autointerp guide)."""

    n_examples_train: int = 20
    """Activating examples the explainer sees (Delphi's default: 40)."""

    n_examples_test: int = 20
    """Activating examples each scorer classifies (Delphi's default: 50)."""

    n_non_activating: int = 20
    """Non-activating examples each scorer classifies (Delphi's default: 50)."""

    seed: int = 0
    device: str = "auto"

    model_config: dict[str, Any] = field(default_factory=dict)
    """The model's HF config values (from its config.json on the hub), so that the
    tests can check hookpoints and widths offline for models not available here."""

    def __post_init__(self) -> None:
        for name in ("k", "train_tokens", "ctx_len", "batch_size", "eval_tokens",
                     "autointerp_tokens", "autointerp_ctx_len", "example_ctx_len",
                     "n_examples_train", "n_examples_test", "n_non_activating"):
            validation.positive(name, getattr(self, name))
        validation.positive("dead_tokens", self.dead_tokens)
        if self.autointerp_ctx_len % self.example_ctx_len:
            raise validation.ConfigError(
                f"--autointerp-ctx-len ({self.autointerp_ctx_len}) must be a multiple of "
                f"--example-ctx-len ({self.example_ctx_len})"
            )
        for name in ("expansion_factor", "num_latents", "latents", "seed", "auxk_alpha",
                     "k_decay_steps"):
            validation.non_negative(name, getattr(self, name))
        if not self.num_latents:
            validation.positive("expansion_factor", self.expansion_factor)
        validation.non_empty("hookpoints", self.hookpoints)
        validation.non_empty("architectures", self.architectures)
        validation.non_empty("scorers", self.scorers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def work_dir(self) -> Path:
        """Default folder for checkpoints, caches and stage records."""
        return RUNS / self.name

    def results_dir(self) -> Path:
        """Default folder for the table and figure files."""
        return self.work_dir() / "results"


PYTHIA_160M = {
    "model_type": "gpt_neox", "hidden_size": 768, "intermediate_size": 3072,
    "num_hidden_layers": 12, "num_attention_heads": 12, "vocab_size": 50304,
}  # fmt: skip
LLAMA_32_1B = {
    "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "tie_word_embeddings": True,
}  # fmt: skip
SMOLLM2_135M = {
    "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "vocab_size": 49152, "tie_word_embeddings": True,
}  # fmt: skip

# What the paper's GPU settings share: every MLP layer, k=32 with 32x latents, a
# SmolLM corpus of 10B tokens that has only a `train` split (training takes its first
# 20%, ~2B tokens for the 1B asked, and held-out text its last 1%), long runs, and Delphi's autointerp setting: 32-token
# examples, 40 shown to the explainer, 50 activating and 50 non-activating per scorer
# (delphi.config defaults, which the paper's runs used), LLM-judged detection and
# fuzzing beside the embedding scorer. `--check` verifies all of it offline.
PAPER_SCALE: dict[str, Any] = {
    # The paper does not describe normalising activations or reviving dead latents:
    # its presets train on raw activations, with sparsify's defaults.
    "normalize": False,
    "auxk_alpha": 0.0,
    "dataset": "EleutherAI/SmolLM2-135M-10B",
    "dataset_split": "train[:20%]",
    "eval_split": "train[99%:]",
    "hookpoints": ("layers.*.mlp",),
    "k": 32,
    "expansion_factor": 32,
    "train_tokens": 1_000_000_000,
    "ctx_len": 2048,
    "batch_size": 32,
    "eval_tokens": 1_048_576,
    "scorers": ("detection", "fuzzing", "embedding"),
    "latents": 100,
    "autointerp_tokens": 10_000_000,
    "autointerp_ctx_len": 256,
    "example_ctx_len": 32,
    "n_examples_train": 40,
    "n_examples_test": 50,
    "n_non_activating": 50,
}

PRESETS = {
    p.name: p
    for p in (
        Preset(
            "embedded",
            "SmolLM2-135M-Instruct on Shakespeare, layer 6 MLP, offline on CPU.",
            train_tokens=100_000,
            eval_tokens=8_192,
            # Normalised (the default) with AuxK, chosen by the dead-latent study
            # (docs/guides/dead-latents.md): a latent is dead after 4 of 48 steps.
            auxk_alpha=1 / 32,
            dead_tokens=8_192,
            model_config=SMOLLM2_135M,
        ),
        Preset(
            "smoke",
            "A minute-long end-to-end run of the embedded model, for the test suite.",
            k=8,
            expansion_factor=2,
            train_tokens=8 * 128 * 4,
            ctx_len=128,
            eval_tokens=2 * 128,
            latents=4,
            autointerp_tokens=8_192,
            model_config=SMOLLM2_135M,
        ),
        Preset(
            "embedded-all-layers",
            "Transcoders and skip transcoders on all 30 MLPs of the embedded model, "
            "in one recorded pass, for attribution graphs (python -m reproductions.circuits).",
            hookpoints=("layers.*.mlp",),
            architectures=("transcoder", "skip-transcoder"),
            k=16,
            expansion_factor=4,
            # The recording of all 30 MLPs' inputs and outputs takes 138 kB a token
            # (float32): 16k tokens is 2.3 GB, within REPLAY_BUDGET_BYTES, so both
            # architectures train from one forward pass of the model.
            train_tokens=16_384,
            ctx_len=64,
            batch_size=4,
            eval_tokens=2_048,
            latents=10,
            autointerp_tokens=8_192,
            model_config=SMOLLM2_135M,
        ),
        Preset(
            "pythia-160m",
            "The paper's Pythia setting: every MLP, 32x latents, k=32, Llama-3.1-8B explainer.",
            model="EleutherAI/pythia-160m",
            **PAPER_SCALE,
            explainer="vllm:meta-llama/Llama-3.1-8B-Instruct",
            model_config=PYTHIA_160M,
        ),
        Preset(
            "llama-3.2-1b",
            "The paper's Llama setting: every MLP, 32x latents, k=32, Llama-3.1-70B explainer.",
            model="meta-llama/Llama-3.2-1B",
            **PAPER_SCALE,
            explainer="vllm:meta-llama/Llama-3.1-70B-Instruct",
            model_config=LLAMA_32_1B,
        ),
    )
}

# EleutherAI's released checkpoints for `--pretrained`, in sparsify's hub layout.
PRETRAINED = {
    "llama-3.2-1b": {
        "sae": "EleutherAI/sae-Llama-3.2-1B-131k",
        "skip-transcoder": "EleutherAI/skip-transcoder-Llama-3.2-1B-131k",
    },
}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"Unknown preset '{name}'. Known: {', '.join(PRESETS)}")
    return PRESETS[name]


OVERRIDABLE = [
    f for f in fields(Preset) if f.name not in ("name", "description", "model_config")
]
"""The fields a command line can override, in declaration order."""


def preset_options(command):
    """One `--field` option per preset field, so every value can be overridden."""
    for f in reversed(OVERRIDABLE):
        kind = str(f.type)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"Override the preset's {f.name}" + (
            " (comma-separated)." if kind.startswith("tuple") else "."
        )
        option_type = {"int": int, "float": float, "bool": click.BOOL}.get(kind, str)
        command = click.option(flag, f.name, type=option_type, default=None, help=help_text)(command)
    return command


def preset_overrides(options: dict) -> dict:
    """The values given to `preset_options`, parsed, for `dataclasses.replace`."""
    changes = {}
    for f in OVERRIDABLE:
        value = options.get(f.name)
        if value is None:
            continue
        if str(f.type).startswith("tuple"):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif str(f.type).startswith("str | None") and value.lower() == "none":
            value = None
        changes[f.name] = value
    return changes
