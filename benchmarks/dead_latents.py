"""Dead latents and reconstruction under each training treatment, side by side.

Every architecture is trained at the embedded preset's budget (SmolLM2-135M layer-6
MLP, 9,216 latents, k=32, 100k Shakespeare tokens, seed 0) once per treatment:
plain (sparsify's defaults), normalised (`training/normalize.py`), and each with
sparsify's AuxK loss on dead latents. All treatments see the same training tokens.

Everything is measured on *selection* text: training-split rows that come after
the trained ones in the same shuffle, so never trained on and disjoint from the
held-out plays Table 1 reports on. The treatment chosen from these numbers is then
reported on the held-out plays by Table 1 itself:
- dead %: latents that never fire over `selection_tokens` tokens, the size of
  the embedded autointerp cache;
- FVU over the same tokens;
- ΔCE and KL of the spliced model over `splice_tokens` selection tokens;
- training time (wall seconds, from the run's manifest).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from sparsify import SparseCoder

from transcoders.activations import module_io
from transcoders.atomic import write_json
from transcoders.checkpoints import find
from transcoders.data import EMBEDDED, load_corpus, load_model, tokenize
from transcoders.evaluation import metrics
from transcoders.evaluation.evaluate import evaluate_coders
from transcoders.training import TrainingConfig, train
from transcoders.training.truncate import truncated

from .common import load

PROGRESS = Path(__file__).parents[1] / "runs" / "benchmarks" / "dead_latents.progress.json"
"""Treatments finished so far (git-ignored), so an interrupted study resumes."""

TREATMENTS: dict[str, dict] = {
    "plain": {"normalize": False},
    "plain + AuxK": {"normalize": False, "auxk_alpha": 1 / 32, "dead_tokens": 8_192},
    "normalised": {"normalize": True},
    "normalised + AuxK": {"normalize": True, "auxk_alpha": 1 / 32, "dead_tokens": 8_192},
    "normalised + AuxK x4": {"normalize": True, "auxk_alpha": 1 / 8, "dead_tokens": 8_192},
}
"""Treatment -> the TrainingConfig fields it sets. AuxK uses OpenAI's weight (1/32)
and four times it; a latent counts as dead for it after 8,192 tokens (4 steps)
without firing, since the run is only 48 steps long. sparsify's k schedule
(`k_decay_steps`) is not among them: it starts at 10 x the input width, 5,760
active latents, and sparsify's CPU decoder then asks for 27 GB for one batch."""


@dataclass
class DeadLatentsBench:
    """Sizes of the study (the embedded preset's training budget)."""

    hookpoint: str = "layers.6.mlp"
    """The embedded model's MLP every coder is trained on."""
    k: int = 32
    """Active latents per token."""
    expansion_factor: int = 16
    """Latents per input dimension (9,216 for the 576-wide MLP)."""
    train_tokens: int = 100_000
    """Training tokens per architecture; the selection rows come after them."""
    ctx_len: int = 256
    """Tokens per sequence, for training and measuring."""
    batch_size: int = 8
    """Sequences per training step and per measured batch."""
    selection_tokens: int = 65_536
    """Selection tokens dead latents and FVU are counted over."""
    splice_tokens: int = 8_192
    """Selection tokens ΔCE and KL are measured on (the full model runs per coder)."""
    treatments: list[str] = field(default_factory=lambda: list(TREATMENTS))
    """Names from TREATMENTS, run in this order."""


def selection_rows(bench: DeadLatentsBench, tokenizer) -> torch.Tensor:
    """Training-split rows after the trained ones, in the training shuffle."""
    trained = bench.train_tokens // bench.ctx_len
    wanted = bench.selection_tokens // bench.ctx_len
    rows = tokenize(load_corpus(EMBEDDED, "train"), tokenizer, ctx_len=bench.ctx_len,
                    max_tokens=(trained + wanted) * bench.ctx_len, seed=0)
    return rows[trained:]["input_ids"]


@torch.no_grad()
def _dead_and_fvu(arch, coder: SparseCoder, acts: dict[str, torch.Tensor], batch: int) -> dict:
    latents = metrics.Latents(coder.num_latents)
    recon = metrics.Reconstruction()
    for x, y in zip(acts[arch.reads].split(batch), acts["output"].split(batch)):
        out = coder(x)
        latents.add(out.latent_acts, out.latent_indices)
        recon.add(out.sae_out.double(), y.double())
    return {"dead_percent": 100 * latents.dead_fraction, "fvu": recon.fvu}


def _treatment(bench: DeadLatentsBench, name: str, model, rows, acts) -> list[dict]:
    """Train all three architectures under treatment `name`; one result each."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = train(TrainingConfig(
            out=tmp, hookpoints=[bench.hookpoint], k=bench.k,
            expansion_factor=bench.expansion_factor, tokens=bench.train_tokens,
            ctx_len=bench.ctx_len, batch_size=bench.batch_size, device="cpu",
            **TREATMENTS[name],
        ))
        coders = [(c, SparseCoder.load_from_disk(c.path)) for c in find(tmp)]
        splice_rows = rows[: bench.splice_tokens // bench.ctx_len].split(bench.batch_size)
        splice = {r["architecture"]: r for r in evaluate_coders(model, coders, splice_rows, progress=False)}
        results = []
        for ckpt, coder in coders:
            arch = ckpt.architecture
            record = manifest.architectures[arch.name]
            results.append({
                "treatment": name,
                "architecture": arch.name,
                **_dead_and_fvu(arch, coder, acts, bench.batch_size * bench.ctx_len),
                "delta_ce": splice[arch.name]["delta_ce"],
                "kl": splice[arch.name]["kl"],
                "train_s": record["wall_time_s"],
                "training_scales": record["training_scales"],
            })
            print(results[-1], flush=True)
        return results


def run(bench: DeadLatentsBench) -> dict:
    """Every treatment in turn. Each finished treatment is kept in PROGRESS, so an
    interrupted study continues where it stopped."""
    torch.manual_seed(0)
    model, tokenizer = load_model(EMBEDDED, device=torch.device("cpu"))
    rows = selection_rows(bench, tokenizer)
    with torch.no_grad():
        io = [module_io(truncated(model, [bench.hookpoint]), [bench.hookpoint], ids)[bench.hookpoint]
              for ids in rows.split(bench.batch_size)]
    acts = {site: torch.cat([a[site] for a in io]).flatten(0, 1) for site in ("input", "output")}
    config = asdict(bench)
    done = json.loads(PROGRESS.read_text()) if PROGRESS.is_file() else {}
    results = done.get("results", []) if done.get("config") == config else []
    for name in bench.treatments:
        if any(r["treatment"] == name for r in results):
            print(f"{name}: measured earlier, kept from {PROGRESS}")
            continue
        results += _treatment(bench, name, model, rows, acts)
        write_json(PROGRESS, {"config": config, "results": results})
    PROGRESS.unlink(missing_ok=True)
    return {
        "config": config,
        "treatments": TREATMENTS,
        "results": results,
        "table": table(results),
        "load": load(),
    }


def table(results: list[dict]) -> list[dict]:
    """The docs page's rows: one per treatment and architecture, architectures in
    Table 1's order."""
    names = list(TREATMENTS)
    order = {"sae": 0, "transcoder": 1, "skip-transcoder": 2}
    return [
        {
            "treatment": r["treatment"],
            "architecture": r["architecture"],
            "dead %": round(r["dead_percent"], 2),
            "FVU": r["fvu"],
            "ΔCE": r["delta_ce"],
            "KL": r["kl"],
            "training s": round(r["train_s"], 1),
        }
        for r in sorted(results, key=lambda r: (names.index(r["treatment"]), order[r["architecture"]]))
    ]
