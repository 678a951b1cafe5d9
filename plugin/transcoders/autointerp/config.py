"""The configuration of an autointerp run (kept apart from the pipeline so the CLI
can build its options without importing Delphi)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from ..validation import ConfigError, device, non_empty, non_negative, positive

SCORERS = ("detection", "fuzzing", "embedding")
TOP_TOKENS = "top-tokens"


@dataclass
class AutointerpConfig:
    """Everything that decides what `run_autointerp` produces."""

    explainer: str = TOP_TOKENS
    """`top-tokens` (model-free baseline) or a client spec for an LLM explainer, e.g.
    `local:embedded`, `http://127.0.0.1:8000/v1@<model>`, `openrouter:<model>`,
    `vllm:<model>` (see `transcoders.autointerp.clients`)."""

    prompt: str = "auto"
    """Explainer prompt: `default` (Delphi's), `compact` (short, for small local models)
    or `auto` (compact for `local:` clients, Delphi's otherwise)."""

    scorers: list[str] = field(default_factory=lambda: ["embedding"])
    """Any of `detection`, `fuzzing` (LLM judges) and `embedding` (offline MiniLM)."""

    scorer_model: str | None = None
    """Client spec of the detection/fuzzing judge; default: the explainer's client,
    or `local:embedded` when the explainer is `top-tokens`."""

    latents: int = 100
    """Latents per (architecture, hookpoint): a seeded random sample of the live
    latents that have enough activating and non-activating examples. 30 could not
    resolve the SAE's real-minus-shuffled margin offline; 100 did (autointerp guide)."""

    seed: int = 0
    """Seeds the latent sample, the shuffled-control pairing and the bootstrap."""

    architectures: list[str] | None = None
    """Architectures to include; None means every one in the run."""

    hookpoints: list[str] | None = None
    """Hookpoints to include; None means every one in the run."""

    out: str | None = None
    """Output folder; default `RUN_DIR/autointerp`."""

    model: str | None = None
    """Subject model; default the run manifest's model, else `embedded`."""

    dataset: str | None = None
    """Text to cache latents on; default the run manifest's dataset, else `embedded`."""

    split: str = "eval"
    """`train` or `eval` for embedded/local corpora (eval is held-out text), or a HF
    split expression."""

    n_tokens: int = 65_536
    """Tokens to cache latents on."""

    ctx_len: int = 64
    """Tokens per cached sequence; a multiple of `example_ctx_len`."""

    batch_size: int = 8
    """Sequences per forward pass while caching."""

    n_splits: int = 5
    """Safetensors files per hookpoint (Delphi's `n_splits`)."""

    example_ctx_len: int = 8
    """Tokens per example shown to the explainer and scorers. With the offline embedding
    scorer, 8 separated real from shuffled explanations better than 16 or 32 (see the
    autointerp guide); LLM judges may want Delphi's 32."""

    min_examples: int = 20
    """Activating examples a latent needs, beyond the `n_examples_train` the explainer
    sees, to be sampled (at least `n_examples_test` are needed anyway): the explainer's
    examples are never scored."""

    n_examples_train: int = 20
    """Activating examples shown to the explainer: the latent's strongest."""

    n_examples_test: int = 20
    """Activating examples each scorer classifies: exactly this many per latent, the
    same number from each activation quantile of the examples the explainer did not
    see. A multiple of `n_quantiles`."""

    n_non_activating: int = 20
    """Non-activating examples each scorer classifies."""

    n_quantiles: int = 10
    """Activation quantiles the examples are drawn from (Delphi's sampler)."""

    examples_per_prompt: int = 5
    """Examples per detection/fuzzing prompt (Delphi's `n_examples_shown`); must divide
    `n_examples_test + n_non_activating` so that no prompt is short."""

    log_probs: bool = False
    """Ask the judge for token log-probs, which gives detection/fuzzing an AUROC."""

    concurrency: int = 8
    """Latents in flight at once; a local client batches their prompts."""

    timeout: float = 20.0
    """Seconds an HTTP endpoint may take over one request before the attempt fails.
    With `retries` and the client's backoff it bounds how long a dead endpoint holds
    the run: 3 × 20 s + 1 s + 2 s = 63 s by default (autointerp-clients guide)."""

    retries: int = 2
    """Retries of a failed HTTP request (connection error, timeout, 408/409/429/5xx)
    after the first attempt."""

    max_unparsed: float = 0.5
    """Fraction of an (architecture, hookpoint)'s explanations that may come back
    unusable before the run stops. Unusable ones are never saved, so a rerun asks
    again. The 135M local explainer left at most 27% unparsed; a broken endpoint 100%."""

    n_boot: int = 10_000
    """Bootstrap resamples for every confidence interval."""

    device: str = "cpu"
    """Where the subject model and a local explainer run: `cpu`, `cuda`, `cuda:N`, or
    `auto` (CUDA when there is one)."""

    reads: str | None = None
    """`input` or `output`: what the coders of a plain sparsify directory read,
    overriding cfg.json; None infers it (see `transcoders.hub`)."""

    def __post_init__(self):
        # Checked here, not in the CLI, so Python callers get the same one-line errors.
        for name in _POSITIVE:
            positive(_FLAG.get(name, name), getattr(self, name))
        for name in ("seed", "retries"):
            non_negative(name, getattr(self, name))
        non_negative("max_unparsed", self.max_unparsed)
        if self.max_unparsed > 1:
            raise ConfigError(
                f"--max-unparsed is a fraction from 0 to 1, got {self.max_unparsed!r}"
            )
        non_empty("scorers", self.scorers)
        for name in self.scorers:
            if name not in SCORERS:
                raise ConfigError(
                    f"--scorers: unknown scorer {name!r}; choose from {', '.join(SCORERS)}"
                )
        for name in ("architectures", "hookpoints"):
            if getattr(self, name) is not None:
                non_empty(_FLAG.get(name, name), getattr(self, name))
        if self.ctx_len % self.example_ctx_len:
            raise ConfigError(
                f"--ctx-len ({self.ctx_len}) must be a multiple of --example-ctx-len "
                f"({self.example_ctx_len})"
            )
        if self.reads not in (None, "input", "output"):
            raise ConfigError(f"--reads is input or output, got {self.reads!r}")
        # Every latent gets the same number of test examples, the same from each
        # quantile (`delphi_compat.held_out_test`), and every judge prompt is full:
        # Delphi's parser counts a short last prompt's answer as unparsed.
        if self.n_examples_test % self.n_quantiles:
            raise ConfigError(
                f"--test-examples ({self.n_examples_test}) must be a multiple of "
                f"--n-quantiles ({self.n_quantiles}): each quantile gives the same number"
            )
        shown = self.n_examples_test + self.n_non_activating
        if {"detection", "fuzzing"} & set(self.scorers) and shown % self.examples_per_prompt:
            raise ConfigError(
                f"--test-examples + --non-activating ({shown}) must be a multiple of "
                f"--examples-per-prompt ({self.examples_per_prompt}), so that every "
                "detection/fuzzing prompt holds that many examples"
            )
        device("device", self.device)
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"

    def cache_config(self, model: str, dataset: str) -> dict:
        """The config.json of the cache: Delphi's CacheConfig fields plus model_name."""
        from .delphi_compat import import_delphi

        import_delphi()
        from delphi.config import CacheConfig

        cfg = CacheConfig(
            dataset_repo=dataset, dataset_split=self.split, dataset_column="text",
            batch_size=self.batch_size, cache_ctx_len=self.ctx_len,
            n_tokens=self.n_tokens, n_splits=self.n_splits,
        ).to_dict()
        return {**cfg, "model_name": model, "seed": self.seed}


# Fields whose command-line flag is not `--<field>`.
_FLAG = {
    "n_tokens": "tokens", "n_examples_train": "train_examples",
    "n_examples_test": "test_examples", "n_non_activating": "non_activating",
    "architectures": "arch",
}
_POSITIVE = tuple(
    f.name for f in fields(AutointerpConfig)
    if f.type in ("int", "float") and f.name not in ("seed", "retries", "max_unparsed")
)
