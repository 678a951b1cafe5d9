"""Which latents of a coder are interpreted, and the Delphi records of their examples
(what the explainer and the scorers see, and what the latent browser shows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from ..checkpoints import Checkpoint
from ..data import EMBEDDED
from . import cache
from .config import AutointerpConfig
from .delphi_compat import held_out_test, import_delphi
from .state import AutointerpError

import_delphi()
from delphi.config import ConstructorConfig, SamplerConfig  # noqa: E402
from delphi.latents import LatentDataset, LatentRecord  # noqa: E402

from .tokenizer_compat import PerTokenDecoding  # noqa: E402


def load_tokenizer(model_name: str):
    """The subject model's tokenizer."""
    from transformers import AutoTokenizer

    from ..data.model import embedded_model_dir

    source = str(embedded_model_dir()) if model_name == EMBEDDED else model_name
    return AutoTokenizer.from_pretrained(source)


@dataclass
class LatentCounts:
    """What a hookpoint's latent cache says about its latents."""

    tokens: int
    """Tokens the cache holds: the window over which `firing` and `dead_fraction` count."""
    firing: np.ndarray
    """Tokens each latent fired on, indexed by latent."""
    eligible: np.ndarray
    """Indices of the live latents with enough activating example windows (the
    explainer's plus the scorers' test examples) and non-activating ones."""

    @property
    def live(self) -> int:
        return int((self.firing > 0).sum())

    @property
    def dead_fraction(self) -> float:
        return 1 - self.live / len(self.firing)


def latent_counts(folder: Path, cfg: AutointerpConfig) -> LatentCounts:
    """Firing counts and eligible latents of one hookpoint's cache, reading one split
    file at a time."""
    tokens, firing, eligible = 0, [], []
    for file in sorted(folder.glob("*.safetensors"), key=lambda p: int(p.stem.split("_")[0])):
        start, end = map(int, file.stem.split("_"))
        data = load_file(file)
        tokens = data["tokens"].size
        locations = data["locations"].astype(np.int64)
        n_windows = tokens // cfg.example_ctx_len
        window = (locations[:, 0] * data["tokens"].shape[1] + locations[:, 1]) // cfg.example_ctx_len
        pairs = np.unique(np.stack([locations[:, 2], window], axis=1), axis=0)
        windows = np.bincount(pairs[:, 0], minlength=end - start + 1)
        firing.append(np.bincount(locations[:, 2], minlength=end - start + 1))
        ok = (windows >= examples_needed(cfg)) & (n_windows - windows >= cfg.n_non_activating)
        eligible.extend((np.flatnonzero(ok) + start).tolist())
    firing = np.concatenate(firing) if firing else np.zeros(0, dtype=np.int64)
    return LatentCounts(tokens, firing, np.array(eligible, dtype=np.int64))


def examples_needed(cfg: AutointerpConfig) -> int:
    """Activating windows a latent needs to be sampled: the explainer's top
    `n_examples_train`, then at least `n_examples_test` (and `min_examples`) more, from
    which the test examples are drawn (`delphi_compat.held_out_test`)."""
    return cfg.n_examples_train + max(cfg.min_examples, cfg.n_examples_test)


def sample(counts: LatentCounts, label: str, cfg: AutointerpConfig) -> np.ndarray:
    """A seeded sample of `cfg.latents` eligible latents, in index order."""
    eligible = counts.eligible
    if len(eligible) < 2:
        raise AutointerpError(
            f"{label}: only {len(eligible)} of {counts.live} live latents have "
            f">= {examples_needed(cfg)} activating examples "
            f"({cfg.n_examples_train} to explain, the rest to score); cache more tokens "
            "(--tokens) or lower --min-examples / --test-examples / --train-examples"
        )
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(eligible, size=min(cfg.latents, len(eligible)), replace=False))


def latent_records(
    ckpt: Checkpoint, out: Path, cfg: AutointerpConfig, tokenizer, sample: np.ndarray
) -> list[LatentRecord]:
    """The Delphi records of the `sample` latents of `ckpt`'s cache, with the examples
    the explainer and the scorers see (also what the latent browser shows)."""
    decoding = PerTokenDecoding(tokenizer)
    dataset = LatentDataset(
        raw_dir=cache.latents_dir(out, ckpt.architecture.name),
        # No test examples from Delphi: `held_out_test` draws them from the examples
        # the explainer does not see.
        sampler_cfg=SamplerConfig(
            n_examples_train=cfg.n_examples_train, n_examples_test=0,
            n_quantiles=cfg.n_quantiles, train_type="top",
        ),
        constructor_cfg=ConstructorConfig(
            example_ctx_len=cfg.example_ctx_len, min_examples=cfg.min_examples,
            n_non_activating=cfg.n_non_activating,
        ),
        tokenizer=decoding,
        modules=[ckpt.hookpoint],
        latents={ckpt.hookpoint: torch.from_numpy(sample)},
    )
    records = [
        held_out_test(r, cfg.n_examples_train, cfg.n_examples_test, cfg.n_quantiles, decoding)
        for r in dataset
    ]
    return sorted(records, key=lambda r: r.latent.latent_index)


def latent_name(record: LatentRecord) -> str:
    """The stem of a latent's explanation and score files."""
    return str(record.latent).replace("/", "--")


def name_prefix(hookpoint: str) -> str:
    """The start of `latent_name` for every latent of `hookpoint`."""
    return f"{hookpoint.replace('/', '--')}_latent"
