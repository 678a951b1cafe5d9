"""Coder-training FLOP/s against this machine's dense-matmul FLOP/s, measured in turn.

The coder is trained by sparsify's own `Trainer` loop, but the subject model is
replaced by `Replay`, which hands the hooked module one recorded activation batch on
every step. So the timed step is exactly the Trainer's per-batch coder work (its hook,
the coder's forward and backward, the optimizer step and its bookkeeping) and none
of the subject model's forward.

FLOPs are counted from what sparsify executes on CPU (no Triton: the decoder is the
eager `embedding_bag`), for N tokens, input width d, L latents and k active:

- encoder forward, `F.linear`: 2·N·d·L (dense; everything else is sparse)
- encoder backward, sparsify's `FusedEncoder.backward`: weight gradient
  `index_add_` of the N·k rows `grad·input`: 2·N·k·d; input gradient (only the SAE's,
  whose input `x - b_dec` depends on a parameter): `embedding_bag`, 2·N·k·d
- decoder forward, `embedding_bag` of k rows per token: 2·N·k·d
- decoder backward: gradient of the k weights per token 2·N·k·d, and of the gathered
  decoder rows 2·N·k·d
- skip connection (skip transcoder): forward 2·N·d², weight gradient 2·N·d²

Element-wise work (ReLU, top-k selection, the loss, the optimizer update) is not
counted as FLOPs: the ratio is useful arithmetic per second against what the matmul
units deliver, and the profile shows how much time that uncounted work takes.

Like `transcoders train`, the benchmark keeps freed memory in the heap
(`transcoders.training.allocator`), so a step reuses the previous step's temporaries
instead of page-faulting fresh ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch
from sparsify import Trainer
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from transcoders import architectures
from transcoders.activations import module_io
from transcoders.data import EMBEDDED, load_corpus, load_model, tokenize
from transcoders.training.allocator import keep_freed_memory
from transcoders.training.truncate import truncated

from .common import Timestamps, alternate, train_config


@dataclass
class CoderFlopsBench:
    """Sizes of the coder-training benchmark."""

    model: str = EMBEDDED
    """Subject model whose activations are replayed."""
    dataset: str = EMBEDDED
    """Corpus the activations are recorded on."""
    hookpoint: str = "layers.15.mlp"
    """Where the activations are recorded."""
    architectures: list[str] = field(
        default_factory=lambda: ["sae", "transcoder", "skip-transcoder"]
    )
    """Coders to train, one after another."""
    k: int = 32
    """Active latents per token."""
    expansion_factor: int = 16
    """Latents per input dimension (the matmul-rate target applies from 16 up)."""
    batch_size: int = 8
    """Sequences per step."""
    ctx_len: int = 256
    """Tokens per sequence."""
    warmup_steps: int = 2
    """Steps run but not timed."""
    steps: int = 6
    """Timed steps per run."""
    repeats: int = 2
    """Alternating coder / matmul runs per architecture."""
    matmul_reps: int = 8
    """Timed matmuls of each shape per run."""
    profile_steps: int = 3
    """Steps profiled with torch.profiler per architecture (0 skips the profile)."""


class _Site(nn.Module):
    """The hooked module: returns the recorded output for the recorded input."""

    def __init__(self, output: Tensor):
        super().__init__()
        self.output = output

    def forward(self, x: Tensor) -> Tensor:
        return self.output


class Replay(nn.Module):
    """Stands in for the subject model in sparsify's Trainer: every forward calls the
    hooked module `site` on one recorded batch, so the Trainer's hook sees real
    activations and the model itself costs nothing."""

    def __init__(self, inputs: Tensor, outputs: Tensor):
        super().__init__()
        self.inputs = inputs
        self.site = _Site(outputs)
        self.dummy_inputs = {"input_ids": torch.zeros(inputs.shape[:2], dtype=torch.long)}

    @property
    def base_model(self) -> nn.Module:
        return self

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.site(self.inputs)


def coder_flops(arch: str, n: int, d: int, latents: int, k: int) -> float:
    """FLOPs of one training step of one coder, counted as the module docstring says."""
    a = architectures.get(arch)
    cfg = a.coder_config()
    sparse_terms = 4 if a.reads == "input" else 5  # the SAE also gets an input gradient
    flops = 2 * n * d * latents + sparse_terms * 2 * n * k * d
    if cfg.skip_connection:
        flops += 2 * 2 * n * d * d
    return float(flops)


def matmul_rates(shapes: list[tuple[int, int, int]], reps: int) -> dict[str, float]:
    """float32 FLOP/s of `torch.matmul` for each (m, k, n): median of `reps`."""
    rates = {}
    for m, kk, n in shapes:
        a, b = torch.randn(m, kk), torch.randn(kk, n)
        torch.matmul(a, b)  # warm-up
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - start)
        rates[f"{m}x{kk}x{n}"] = 2 * m * kk * n / sorted(times)[len(times) // 2]
    return rates


def _trainer(arch: str, replay: Replay, bench: CoderFlopsBench, out: str) -> Trainer:
    cfg = train_config(arch, "site", out, k=bench.k, expansion_factor=bench.expansion_factor,
                       batch_size=bench.batch_size)
    rows = [{"input_ids": replay.dummy_inputs["input_ids"][i]} for i in range(bench.batch_size)]
    return Trainer(cfg, rows * (bench.warmup_steps + bench.steps + 1), replay)


def _step_times(arch: str, replay: Replay, bench: CoderFlopsBench) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-coder-") as out, \
            contextlib.redirect_stdout(io.StringIO()):
        trainer = _trainer(arch, replay, bench, out)
        stamps = Timestamps(replay)
        try:
            trainer.fit()
        finally:
            stamps.remove()
    return stamps.gaps(skip=bench.warmup_steps)


# Operators that are dense matrix products (the only ones near the matmul rate).
DENSE = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul")


def _profile(arch: str, replay: Replay, bench: CoderFlopsBench, top: int = 15) -> dict:
    """Self CPU time per op over a short Trainer run: where a coder step's time goes."""
    small = CoderFlopsBench(**{**asdict(bench), "warmup_steps": 1, "steps": bench.profile_steps})
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as out, \
            contextlib.redirect_stdout(io.StringIO()):
        trainer = _trainer(arch, replay, small, out)
        trainer.save = lambda: None  # the final checkpoint is not part of a step
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.fit()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    dense = sum(e.self_cpu_time_total for e in events if e.key in DENSE)
    return {
        "dense_matmul_share": dense / total,
        "total_self_cpu_s": total / 1e6,
        "ops": [
            {"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total, "calls": e.count}
            for e in events[:top]
        ],
    }


def run(bench: CoderFlopsBench) -> dict:
    """Per architecture: coder FLOP/s, matmul FLOP/s measured in turn, their ratio."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    heap_kept = keep_freed_memory()
    model, tokenizer = load_model(bench.model)
    rows = tokenize(
        load_corpus(bench.dataset, "train"), tokenizer,
        ctx_len=bench.ctx_len, max_tokens=bench.batch_size * bench.ctx_len,
    )
    acts = module_io(truncated(model, [bench.hookpoint]), [bench.hookpoint], rows[:]["input_ids"])
    inputs, outputs = acts[bench.hookpoint]["input"], acts[bench.hookpoint]["output"]
    del model
    n, d = bench.batch_size * bench.ctx_len, inputs.shape[-1]
    latents = d * bench.expansion_factor
    # The encoder's own shape, and a square one as a second reference.
    shapes = [(n, d, latents), (n, n, n)]

    results = {}
    for arch in bench.architectures:
        print(f"coder FLOP/s: {arch} ...", flush=True)
        # SAEs encode the output, transcoders the input; the Trainer picks which.
        replay = Replay(inputs, outputs)
        matmul_samples: list[dict[str, float]] = []

        def matmuls() -> list[float]:
            matmul_samples.append(matmul_rates(shapes, bench.matmul_reps))
            return [max(matmul_samples[-1].values())]

        timed = alternate(lambda: _step_times(arch, replay, bench), matmuls, bench.repeats)
        flops = coder_flops(arch, n, d, latents, bench.k)
        coder_rate = flops / timed["a"]["median"]
        matmul_rate = timed["b"]["median"]
        results[arch] = {
            "flops_per_step": flops,
            "step_s": timed["a"],
            "coder_flops_per_s": coder_rate,
            "matmul_flops_per_s": timed["b"],
            "matmul_by_shape": matmul_samples,
            "fraction_of_matmul": coder_rate / matmul_rate,
            "profile": _profile(arch, replay, bench) if bench.profile_steps else None,
        }
        print(
            f"  coder {coder_rate / 1e9:.1f} GFLOP/s, matmul {matmul_rate / 1e9:.1f} GFLOP/s, "
            f"{100 * coder_rate / matmul_rate:.0f}%",
            flush=True,
        )
    return {
        "config": asdict(bench),
        "freed_memory_kept_in_heap": heap_kept,
        "tokens_per_step": n,
        "d_in": d,
        "num_latents": latents,
        "matmul_shapes": [list(s) for s in shapes],
        "architectures": results,
    }
