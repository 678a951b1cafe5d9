"""Training tokens/s: the plugin's `train` path against sparsify's Trainer as
sparsify's CLI runs it, with the same coder config, hookpoint, batch and tokens.

A (plugin): `transcoders.training.truncated(model, [hookpoint])`, the base model cut
after the hooked layer, trained by `AtomicTrainer`, exactly what `transcoders train`
builds for one architecture.
B (sparsify): `sparsify.Trainer` on the whole base model. With `loss_fn="fvu"`
sparsify's CLI loads `AutoModel`, i.e. the base model without the LM head, so B gets
`model.base_model` (the same modules and weights as `AutoModel` would load).

A step is timed from one model forward to the next (a forward pre-hook; the last one
ends where `fit` calls `save`), so it holds everything the Trainer does per batch:
data loading, the model forward, the coder's forward and backward, and the optimizer
step. The final checkpoint save is not timed. The machine is shared, so runs are short
and many: the two sides alternate run by run.

Both sides run in one process, so sparsify's side too gets the heap setting that
`transcoders train` makes (`transcoders.training.allocator`): the ratio shows what
truncation alone buys.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field

from sparsify import Trainer

from transcoders.data import EMBEDDED, load_corpus, load_model, tokenize
from transcoders.training.allocator import keep_freed_memory
from transcoders.training.checkpoint import AtomicTrainer
from transcoders.training.truncate import truncated

from .common import Timestamps, alternate, train_config


@dataclass
class TrainingBench:
    """Sizes of the training benchmark."""

    model: str = EMBEDDED
    """Subject model (`embedded` is SmolLM2-135M-Instruct)."""
    dataset: str = EMBEDDED
    """Corpus to tokenize."""
    hookpoints: list[str] = field(
        default_factory=lambda: ["layers.3.mlp", "layers.15.mlp", "layers.27.mlp"]
    )
    """Each hookpoint is measured separately (one coder per run, as in one
    architecture of `transcoders train`)."""
    architecture: str = "transcoder"
    """Registry name of the coder trained by both sides."""
    k: int = 32
    """Active latents per token."""
    expansion_factor: int = 16
    """Latents per input dimension."""
    batch_size: int = 8
    """Sequences per step."""
    ctx_len: int = 128
    """Tokens per sequence (short, so the suite finishes in minutes on 2 cores)."""
    warmup_steps: int = 1
    """Steps run but not timed (the first one also initialises the coder's biases)."""
    steps: int = 2
    """Timed steps per run."""
    repeats: int = 4
    """A/B runs per hookpoint, alternating."""


def _fit_step_times(trainer_cls, model, rows, bench: TrainingBench, hookpoint: str) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        cfg = train_config(bench.architecture, hookpoint, out, k=bench.k,
                           expansion_factor=bench.expansion_factor, batch_size=bench.batch_size)
        # sparsify prints its setup on every construction; keep the report readable.
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = trainer_cls(cfg, rows, model)
            stamps = Timestamps(model)
            # fit() saves right after its last step: that marks the step's end.
            save = trainer.save
            trainer.save = lambda: (stamps.mark(), save())
            try:
                trainer.fit()
            finally:
                stamps.remove()
    return stamps.gaps(skip=bench.warmup_steps)


def run(bench: TrainingBench) -> dict:
    """Median step time of both sides for every hookpoint, and their ratio."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    heap_kept = keep_freed_memory()
    model, tokenizer = load_model(bench.model)
    n_rows = (bench.warmup_steps + bench.steps) * bench.batch_size
    rows = tokenize(
        load_corpus(bench.dataset, "train"), tokenizer,
        ctx_len=bench.ctx_len, max_tokens=n_rows * bench.ctx_len,
    )
    tokens_per_step = bench.batch_size * bench.ctx_len
    layers = {}
    for hookpoint in bench.hookpoints:
        plugin_model = truncated(model, [hookpoint])
        print(f"training: {hookpoint} ...", flush=True)
        timed = alternate(
            lambda: _fit_step_times(AtomicTrainer, plugin_model, rows, bench, hookpoint),
            lambda: _fit_step_times(Trainer, model.base_model, rows, bench, hookpoint),
            bench.repeats,
        )
        plugin, sparsify = timed["a"], timed["b"]
        layers[hookpoint] = {
            "plugin": {**plugin, "tokens_per_s": tokens_per_step / plugin["median"],
                       "layers_run": len(plugin_model.layers)},
            "sparsify": {**sparsify, "tokens_per_s": tokens_per_step / sparsify["median"],
                         "layers_run": len(model.base_model.layers)},
            "speedup": sparsify["median"] / plugin["median"],
        }
        print(
            f"  plugin {layers[hookpoint]['plugin']['tokens_per_s']:.0f} tok/s, "
            f"sparsify {layers[hookpoint]['sparsify']['tokens_per_s']:.0f} tok/s, "
            f"speedup {layers[hookpoint]['speedup']:.2f}x",
            flush=True,
        )
    speedups = [v["speedup"] for v in layers.values()]
    return {
        "config": asdict(bench),
        "freed_memory_kept_in_heap": heap_kept,
        "baseline": "sparsify.Trainer on model.base_model (what sparsify's CLI loads "
                    "with AutoModel for loss_fn='fvu': all layers, no LM head)",
        "tokens_per_step": tokens_per_step,
        "hookpoints": layers,
        "min_speedup": min(speedups),
        "median_speedup": statistics.median(speedups),
    }
