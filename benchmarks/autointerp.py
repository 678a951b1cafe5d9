"""Autointerp throughput: latents scored per minute by Delphi's detection scorer with
the plugin's `LocalClient` judge, batching concurrent prompts (`batch_size`) against
one prompt per `generate` call (`batch_size=1`). Same latents, same prompts.

The latents come from a cache the plugin writes (`cache_latents`, a randomly
initialised coder) and Delphi's `LatentDataset`; each latent's explanation lists the
tokens it fires most strongly on in its training examples, so the prompts have a
realistic length without an explainer model in the loop. Every latent is scored
concurrently, as `transcoders autointerp` does, so a batching client can batch.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from sparsify import SparseCoder

from transcoders import architectures, checkpoints
from transcoders.autointerp.cache import FIRING_COUNTS_FILE, cache_latents, latents_dir
from transcoders.autointerp.clients import LocalClient
from transcoders.autointerp.delphi_compat import import_delphi
from transcoders.data import EMBEDDED, load_corpus, load_model, tokenize
from transcoders.run import coder_dir

from .common import alternate

import_delphi()
from delphi.config import ConstructorConfig, SamplerConfig  # noqa: E402
from delphi.latents import LatentDataset, LatentRecord  # noqa: E402
from delphi.scorers import DetectionScorer  # noqa: E402


@dataclass
class AutointerpBench:
    """Sizes of the autointerp benchmark."""

    model: str = EMBEDDED
    """Subject model, and the judge (the local client runs it)."""
    dataset: str = EMBEDDED
    """Corpus the latents are cached on."""
    hookpoint: str = "layers.6.mlp"
    """Where the coder reads."""
    cache_tokens: int = 8192
    """Tokens cached to draw examples from."""
    ctx_len: int = 64
    """Tokens per cached sequence."""
    latents: int = 4
    """Latents scored per run (the most frequently firing ones)."""
    examples: int = 5
    """Activating and non-activating examples per latent (each)."""
    example_ctx_len: int = 32
    """Tokens per example."""
    examples_per_prompt: int = 5
    """Examples per detection prompt (Delphi's `n_examples_shown`)."""
    batch_size: int = 8
    """The batched client's `batch_size`."""
    max_tokens: int = 40
    """Tokens the judge may generate per prompt."""
    repeats: int = 2
    """Alternating batched / one-at-a-time runs."""


def _records(bench: AutointerpBench, model, tokenizer, root: Path) -> list[LatentRecord]:
    arch = architectures.get("transcoder")
    torch.manual_seed(0)
    d_in = model.config.hidden_size
    SparseCoder(d_in, arch.coder_config(k=32, expansion_factor=16)).save_to_disk(
        coder_dir(root / "run", arch.name, bench.hookpoint)
    )
    rows = tokenize(load_corpus(bench.dataset, "eval"), tokenizer,
                    ctx_len=bench.ctx_len, max_tokens=bench.cache_tokens)
    cache_latents(model, checkpoints.find(root / "run"), rows[:]["input_ids"], root / "cache",
                  config={"model_name": bench.model}, n_splits=1)
    counts = torch.load(root / "cache" / arch.name / "log" / FIRING_COUNTS_FILE,
                        weights_only=True)[bench.hookpoint]
    chosen = counts.argsort(descending=True)[: bench.latents]
    dataset = LatentDataset(
        raw_dir=latents_dir(root / "cache", arch.name),
        sampler_cfg=SamplerConfig(n_examples_train=bench.examples,
                                  n_examples_test=bench.examples, n_quantiles=1),
        constructor_cfg=ConstructorConfig(example_ctx_len=bench.example_ctx_len,
                                          min_examples=bench.examples,
                                          n_non_activating=bench.examples),
        tokenizer=tokenizer,
        modules=[bench.hookpoint],
        latents={bench.hookpoint: chosen.sort().values},
    )
    records = list(dataset)
    for record in records:
        top = [ex.tokens[ex.activations.argmax()] for ex in record.train]
        words = sorted({tokenizer.decode([int(t)]).strip() or repr(tokenizer.decode([int(t)])) for t in top})
        record.explanation = f"The tokens {', '.join(repr(w) for w in words)}."
        record.extra_examples = record.not_active
    return records


def _score_all(records: list[LatentRecord], client: LocalClient, bench: AutointerpBench) -> list[float]:
    """Score every record concurrently; return [latents per minute]."""
    scorer = DetectionScorer(client, n_examples_shown=bench.examples_per_prompt,
                             max_tokens=bench.max_tokens)

    async def main():
        return await asyncio.gather(*(scorer(record) for record in records))

    start = time.perf_counter()
    results = asyncio.run(main())
    elapsed = time.perf_counter() - start
    if len(results) != len(records):
        raise RuntimeError("the scorer returned fewer results than latents")
    return [len(records) / elapsed * 60]


def run(bench: AutointerpBench) -> dict:
    """Latents per minute, batched against one prompt at a time."""
    model, tokenizer = load_model(bench.model)
    with tempfile.TemporaryDirectory(prefix="bench-autointerp-") as tmp:
        records = _records(bench, model, tokenizer, Path(tmp))
    if len(records) < bench.latents:
        raise RuntimeError(
            f"only {len(records)} latents have {bench.examples} examples; raise cache_tokens"
        )
    batched = LocalClient(model, tokenizer, chat_template=False, batch_size=bench.batch_size)
    single = LocalClient(model, tokenizer, chat_template=False, batch_size=1)
    prompts = len(records) * -(-2 * bench.examples // bench.examples_per_prompt)
    print(f"autointerp: {len(records)} latents, {prompts} prompts per run ...", flush=True)
    timed = alternate(lambda: _score_all(records, batched, bench),
                      lambda: _score_all(records, single, bench), bench.repeats)
    speedup = timed["a"]["median"] / timed["b"]["median"]
    print(f"  batched {timed['a']['median']:.2f} latents/min, one at a time "
          f"{timed['b']['median']:.2f} latents/min, {speedup:.2f}x", flush=True)
    return {
        "config": asdict(bench),
        "prompts_per_run": prompts,
        "batched": timed["a"],
        "one_at_a_time": timed["b"],
        "speedup": speedup,
    }
