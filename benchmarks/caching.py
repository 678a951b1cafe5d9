"""Latent caching: tokens/s and peak memory of the plugin's `cache_latents` against
Delphi's `LatentCache`, on the same model, coder and tokens, at two token counts.

Each measurement runs in its own process, so its peak resident memory (VmHWM) is its
own. Delphi gets the base model (its CLI loads `AutoModel`) and the coder through its
own `sae_dense_latents`, as `delphi.__main__` wires it; it runs `run` then
`save_splits`. The plugin runs `cache_latents`, which writes the same files. After
each pair the two caches are compared file by file: the same split files holding the
same locations, activations and tokens.

Workers run with glibc's `MALLOC_MMAP_THRESHOLD_` at 1 MiB (both sides alike), so
large freed buffers go back to the OS at once. With glibc's adaptive default, freed
per-batch buffers stay in a fragmented heap and the peak drifts by tens of MiB from
run to run whatever the token count, which would hide the growth being measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from transcoders.data import EMBEDDED

from .common import load


MMAP_THRESHOLD = 1 << 20


@dataclass
class CachingBench:
    """Sizes of the caching benchmark."""

    model: str = EMBEDDED
    """Subject model."""
    dataset: str = EMBEDDED
    """Corpus to cache on."""
    hookpoint: str = "layers.6.mlp"
    """Where the coder reads."""
    architecture: str = "transcoder"
    """Registry name of the (randomly initialised) coder."""
    k: int = 32
    """Active latents per token."""
    expansion_factor: int = 16
    """Latents per input dimension."""
    token_counts: list[int] = field(default_factory=lambda: [4096, 32768])
    """Tokens cached, one measurement pair each."""
    ctx_len: int = 256
    """Tokens per sequence."""
    batch_size: int = 8
    """Sequences per forward pass (both sides)."""
    n_splits: int = 5
    """Split files per hookpoint (both sides)."""
    buffer_size: int = 1 << 16
    """The plugin's in-memory buffer, in nonzero activations (the default, 2**22, is
    larger than every token count here times k)."""


def _vm(field_name: str) -> int:
    """A /proc/self/status memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} missing from /proc/self/status")


def _make_run(root: Path, bench: CachingBench, d_in: int) -> Path:
    import torch
    from sparsify import SparseCoder

    from transcoders import architectures

    torch.manual_seed(0)
    cfg = architectures.get(bench.architecture).coder_config(
        k=bench.k, expansion_factor=bench.expansion_factor
    )
    SparseCoder(d_in, cfg).save_to_disk(root / bench.architecture / bench.hookpoint)
    return root


def worker(impl: str, n_tokens: int, bench: CachingBench, run_dir: Path, out: Path) -> dict:
    """One measurement, in the current process (run it in a fresh one)."""
    import torch

    from transcoders import checkpoints
    from transcoders.autointerp.delphi_compat import import_delphi
    from transcoders.data import load_corpus, load_model, tokenize

    model, tokenizer = load_model(bench.model)
    rows = tokenize(load_corpus(bench.dataset, "train"), tokenizer,
                    ctx_len=bench.ctx_len, max_tokens=n_tokens)
    tokens = rows[:]["input_ids"]
    (ckpt,) = [c for c in checkpoints.find(run_dir) if c.hookpoint == bench.hookpoint]
    _fault_in(model)
    torch.manual_seed(0)
    baseline = _vm("VmRSS")
    start = time.perf_counter()
    if impl == "plugin":
        from transcoders.autointerp.cache import cache_latents

        report = cache_latents(
            model, [ckpt], tokens, out, config={"model_name": bench.model},
            batch_size=bench.batch_size, n_splits=bench.n_splits, buffer_size=bench.buffer_size,
        )
        extra = {"flushes": report.flushes, "peak_buffer_entries": report.peak_buffer_entries}
    else:
        import_delphi()
        from delphi.latents import LatentCache
        from delphi.sparse_coders.load_sparsify import sae_dense_latents

        coder = ckpt.load()
        cache = LatentCache(
            model.base_model, {bench.hookpoint: partial(sae_dense_latents, sae=coder)},
            batch_size=bench.batch_size, transcode=ckpt.architecture.reads == "input",
        )
        with torch.inference_mode():
            cache.run(tokens.numel(), tokens)
        latents = out / bench.architecture / "latents"
        latents.mkdir(parents=True)
        cache.save_splits(n_splits=bench.n_splits, save_dir=latents)
        extra = {}
    wall = time.perf_counter() - start
    return {
        "impl": impl, "tokens": int(tokens.numel()), "wall_s": wall,
        "tokens_per_s": tokens.numel() / wall, "baseline_rss_bytes": baseline,
        "peak_rss_bytes": _vm("VmHWM"), "growth_bytes": _vm("VmHWM") - baseline, **extra,
    }


def _fault_in(model) -> None:
    """Read every weight once. The weights are memory-mapped from safetensors, so
    otherwise each embedding row joins the resident set the first time its token
    appears: a rise that grows with the tokens cached (+77 MiB of file pages from 4k to
    32k tokens, measured) and belongs to neither cache implementation."""
    for param in model.parameters():
        param.detach().sum()


def same_cache(a: Path, b: Path) -> dict:
    """Compare two caches' split files: names, and every array exactly."""
    from safetensors.numpy import load_file

    names_a = sorted(p.name for p in a.glob("*.safetensors"))
    names_b = sorted(p.name for p in b.glob("*.safetensors"))
    if not names_a or names_a != names_b:
        return {"equal": False, "why": f"split files differ: {names_a} vs {names_b}"}
    entries = 0
    for name in names_a:
        x, y = load_file(a / name), load_file(b / name)
        if x.keys() != y.keys():
            return {"equal": False, "why": f"{name}: keys {sorted(x)} vs {sorted(y)}"}
        for key in x:
            if x[key].dtype != y[key].dtype or not np.array_equal(x[key], y[key]):
                return {"equal": False, "why": f"{name}: '{key}' differs"}
        entries += len(x["activations"])
    return {"equal": True, "files": len(names_a), "nonzero_entries": entries}


def _spawn(impl: str, n_tokens: int, bench: CachingBench, run_dir: Path, out: Path) -> dict:
    args = json.dumps({"impl": impl, "n_tokens": n_tokens, "bench": asdict(bench),
                       "run_dir": str(run_dir), "out": str(out)})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.caching", args],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1],
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"caching worker ({impl}, {n_tokens}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(bench: CachingBench) -> dict:
    """Both implementations at every token count, alternating, each in its own process."""
    from transformers import AutoConfig

    from transcoders.data.model import embedded_model_dir

    source = str(embedded_model_dir()) if bench.model == EMBEDDED else bench.model
    d_in = AutoConfig.from_pretrained(source).hidden_size
    measurements = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        run_dir = _make_run(Path(tmp) / "run", bench, d_in)
        for n_tokens in bench.token_counts:
            pair = {}
            for impl in ("plugin", "delphi"):
                print(f"caching: {impl}, {n_tokens} tokens ...", flush=True)
                before = load()
                result = _spawn(impl, n_tokens, bench, run_dir, Path(tmp) / f"{impl}-{n_tokens}")
                pair[impl] = {**result, "load": before}
                print(f"  {result['tokens_per_s']:.0f} tok/s, peak RSS "
                      f"{result['peak_rss_bytes'] / 2**20:.0f} MiB "
                      f"(+{result['growth_bytes'] / 2**20:.0f} MiB over the loaded model)", flush=True)
            folder = Path(bench.architecture) / "latents" / bench.hookpoint
            match = same_cache(Path(tmp) / f"plugin-{n_tokens}" / folder,
                               Path(tmp) / f"delphi-{n_tokens}" / folder)
            measurements.append({
                "tokens": n_tokens, **pair, "same_as_delphi": match,
                "speedup": pair["plugin"]["tokens_per_s"] / pair["delphi"]["tokens_per_s"],
            })
    first, last = measurements[0], measurements[-1]
    span = last["tokens"] - first["tokens"]
    growth = {
        impl: (last[impl]["growth_bytes"] - first[impl]["growth_bytes"]) / span
        for impl in ("plugin", "delphi")
    }
    return {
        "config": asdict(bench),
        "measurements": measurements,
        "growth_bytes_per_token": growth,
        "same_as_delphi": all(m["same_as_delphi"]["equal"] for m in measurements),
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    result = worker(spec["impl"], spec["n_tokens"], CachingBench(**spec["bench"]),
                    Path(spec["run_dir"]), Path(spec["out"]))
    print(json.dumps(result))
