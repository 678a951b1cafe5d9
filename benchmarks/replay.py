"""Training all three architectures: the plugin's path against sparsify's Trainer run
once per architecture, on the same tokens, hookpoint and coder configs.

A (plugin): what `transcoders train` builds for several architectures. The subject
model, cut after the hooked layer, runs once over the tokens (`ActivationReplay`
records the hookpoint's input and output); each architecture's `AtomicTrainer` then
replays those activations instead of running the model.
B (sparsify): one `sparsify.Trainer` per architecture on `model.base_model`, as
sparsify's CLI would be run three times: every architecture pays a full forward.

A sample is the wall time of the whole job (A: recording plus three fits; B: three
fits), each fit from constructing its Trainer to the end of `fit` (final save
included on both sides). The two sides alternate, in one process, so both get the
heap setting that `transcoders train` makes (`transcoders.training.allocator`).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

from sparsify import Trainer

from transcoders.data import EMBEDDED, load_corpus, load_model, tokenize
from transcoders.training.allocator import keep_freed_memory
from transcoders.training.checkpoint import AtomicTrainer
from transcoders.training.replay import ActivationReplay
from transcoders.training.truncate import truncated

from .common import alternate, train_config


@dataclass
class ReplayBench:
    """Sizes of the three-architecture training benchmark."""

    model: str = EMBEDDED
    """Subject model."""
    dataset: str = EMBEDDED
    """Corpus to tokenize."""
    hookpoint: str = "layers.15.mlp"
    """Where every coder reads (the middle of SmolLM2's 30 layers)."""
    architectures: list[str] = field(
        default_factory=lambda: ["sae", "transcoder", "skip-transcoder"]
    )
    """Architectures trained, one after another, by both sides."""
    k: int = 32
    """Active latents per token."""
    expansion_factor: int = 16
    """Latents per input dimension."""
    batch_size: int = 8
    """Sequences per step."""
    ctx_len: int = 128
    """Tokens per sequence."""
    steps: int = 8
    """Training steps per architecture."""
    repeats: int = 2
    """A/B runs, alternating."""


def _fit(trainer_cls, model, rows, bench: ReplayBench, arch_name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as out:
        cfg = train_config(arch_name, bench.hookpoint, out, k=bench.k,
                           expansion_factor=bench.expansion_factor, batch_size=bench.batch_size)
        # sparsify prints its setup on every construction; keep the report readable.
        with contextlib.redirect_stdout(io.StringIO()):
            trainer_cls(cfg, rows, model).fit()


def _plugin(model, rows, bench: ReplayBench) -> list[float]:
    start = time.perf_counter()
    replay = ActivationReplay(truncated(model, [bench.hookpoint]), [bench.hookpoint], rows,
                              bench.batch_size)
    for name in bench.architectures:
        _fit(AtomicTrainer, replay, rows, bench, name)
    return [time.perf_counter() - start]


def _sparsify(model, rows, bench: ReplayBench) -> list[float]:
    start = time.perf_counter()
    for name in bench.architectures:
        _fit(Trainer, model.base_model, rows, bench, name)
    return [time.perf_counter() - start]


def run(bench: ReplayBench) -> dict:
    """Median job wall time of both sides and their ratio."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    heap_kept = keep_freed_memory()
    model, tokenizer = load_model(bench.model)
    rows = tokenize(
        load_corpus(bench.dataset, "train"), tokenizer, ctx_len=bench.ctx_len,
        max_tokens=bench.steps * bench.batch_size * bench.ctx_len,
    )
    print(f"replay: {len(bench.architectures)} architectures at {bench.hookpoint} ...", flush=True)
    timed = alternate(lambda: _plugin(model, rows, bench), lambda: _sparsify(model, rows, bench),
                      bench.repeats)
    plugin, sparsify = timed["a"], timed["b"]
    speedup = sparsify["median"] / plugin["median"]
    print(f"  plugin {plugin['median']:.1f} s, sparsify {sparsify['median']:.1f} s, "
          f"speedup {speedup:.2f}x", flush=True)
    return {
        "config": asdict(bench),
        "freed_memory_kept_in_heap": heap_kept,
        "tokens_per_architecture": len(rows) * bench.ctx_len,
        "plugin": plugin,
        "sparsify": sparsify,
        "speedup": speedup,
    }
