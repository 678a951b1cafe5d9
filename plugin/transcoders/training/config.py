"""Configuration of a training run: one token stream, several architectures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import validation as check
from ..data import EMBEDDED


@dataclass
class TrainingConfig:
    """Everything that decides what `train` produces; recorded in the manifest."""

    out: str
    """Run directory; gets `<arch>/<hookpoint>/` checkpoints and `manifest.json`."""

    architectures: list[str] = field(
        default_factory=lambda: ["sae", "transcoder", "skip-transcoder"]
    )
    """Registry names, trained one after another on the same tokens."""

    hookpoints: list[str] = field(default_factory=lambda: ["layers.6.mlp"])
    """Module names or globs, relative to the model's `base_model`."""

    model: str = EMBEDDED
    """`embedded`, a HF hub id or a local model directory."""

    dataset: str = EMBEDDED
    """`embedded`, a HF dataset id or a local folder of text files."""

    dataset_split: str = "train"
    """HF split expression for training rows (ignored for embedded/local)."""

    eval_split: str = "validation"
    """HF split expression for held-out rows (ignored for embedded/local)."""

    k: int = 32
    """Active latents per token (TopK)."""

    expansion_factor: int = 16
    """Latents as a multiple of the input width, unless `num_latents` is set."""

    num_latents: int = 0
    """Exact number of latents; 0 means use `expansion_factor`."""

    tokens: int = 200_000
    """Training tokens per architecture."""

    eval_tokens: int = 32_768
    """Held-out tokens for the final FVU in the manifest."""

    ctx_len: int = 256
    """Tokens per sequence."""

    batch_size: int = 8
    """Sequences per optimizer step."""

    lr: float | None = None
    """Learning rate; None lets sparsify choose from the number of latents."""

    normalize: bool = True
    """Train every coder on its input and target each scaled to a mean square of
    about one per coordinate (a power of two estimated on the first batches), and
    fold the scales into the saved weights (`training/normalize.py`)."""

    auxk_alpha: float = 0.0
    """Weight of sparsify's AuxK loss, which trains dead latents to predict the
    residual; 0 turns it off."""

    dead_tokens: int = 10_000_000
    """Tokens without firing after which AuxK counts a latent as dead (sparsify's
    `dead_feature_threshold`)."""

    k_decay_steps: int = 0
    """Steps over which sparsify lowers k linearly from 10 x the input width to `k`;
    0 trains at `k` throughout."""

    seed: int = 0
    """Seeds the data order and every coder's initialisation."""

    save_every: int = 50
    """Checkpoint every this many steps (the last good one survives Ctrl-C)."""

    truncate: bool = True
    """Run the model only up to the last hooked layer while training."""

    device: str = "auto"
    """`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`."""

    def __post_init__(self) -> None:
        check.non_empty("--arch", self.architectures)
        check.non_empty("hookpoints", self.hookpoints)
        twice = sorted({a for a in self.architectures if self.architectures.count(a) > 1})
        if twice:
            raise check.ConfigError(f"--arch names {', '.join(twice)} more than once")
        for name in ("k", "expansion_factor", "tokens", "eval_tokens", "ctx_len",
                     "batch_size", "save_every"):  # fmt: skip
            check.positive(name, getattr(self, name))
        check.non_negative("num_latents", self.num_latents)
        check.non_negative("seed", self.seed)
        check.non_negative("auxk_alpha", self.auxk_alpha)
        check.positive("dead_tokens", self.dead_tokens)
        check.non_negative("k_decay_steps", self.k_decay_steps)
        if self.lr is not None:
            check.positive("lr", self.lr)
        if self.num_latents and self.k > self.num_latents:
            raise check.ConfigError(
                f"--k {self.k} is more than --num-latents {self.num_latents}: "
                "lower --k or raise --num-latents"
            )
        check.device("device", self.device)

    def to_dict(self) -> dict:
        """Every field, as recorded in the manifest."""
        return asdict(self)

    def identity(self) -> dict:
        """The fields that make two runs the same run (resumable into each other)."""
        skip = {"out", "save_every", "device"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}


DEFAULTS = TrainingConfig(out="")
"""Every field at its default: what the CLIs, evaluation and the presets fall back on."""
