"""Splice evaluation of every coder in a run: how much model behaviour each keeps.

For every batch of held-out tokens the model runs once clean, once with each
hooked module zero-ablated, and once per coder with that module's output replaced
by the coder's prediction (SAE: from the module's output; transcoders: from its
input). With `splice_all`, each architecture also replaces all its hookpoints at
once, and is compared with zero-ablating all of them at once.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from sparsify import SparseCoder
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import checkpoints, hub
from .. import validation as check
from ..atomic import atomic_path, write_json
from ..checkpoints import Checkpoint
from ..data import load_corpus, load_model, tokenize
from ..errors import FileSystemError, UserError
from ..hookpoints import HookpointError, module_widths, resolve_hookpoints
from ..run import CONFIG_FILE, MANIFEST_FILE, Manifest
from ..training.config import DEFAULTS as TRAINING_DEFAULTS
from . import metrics
from .splice import Replacement, splice, zero_ablation

RESULTS_JSON = "evaluation.json"
RESULTS_CSV = "evaluation.csv"
ALL = "all"
"""The hookpoint column of a row that splices every hookpoint of an architecture."""

COLUMNS = [
    "architecture", "hookpoint", "fvu", "explained_variance", "ce_clean",
    "ce_spliced", "delta_ce", "kl", "ce_zero", "loss_recovered", "l0",
    "dead_fraction", "num_latents", "k", "tokens", "checkpoint",
]  # fmt: skip


class MissingModelError(UserError, ValueError):
    """A run without a manifest, evaluated without naming the model."""


@dataclass
class EvalConfig:
    """What to evaluate on. Fields left as None come from the run's training config,
    or for a run without one (a plain sparsify folder) `TrainingConfig`'s defaults."""

    run_dir: str
    """A `transcoders train` run, or any sparsify checkpoint directory."""

    model: str | None = None
    """Subject model; defaults to the run's. Required for a run without manifest."""

    dataset: str | None = None
    """Corpus whose held-out split is evaluated; defaults to the run's."""

    eval_split: str | None = None
    """HF split expression for held-out rows (HF datasets only); defaults to the
    run's."""

    tokens: int | None = None
    """Held-out tokens to evaluate (rounded down to whole `ctx_len` rows); defaults
    to the run's `eval_tokens`, so FVU is measured on the rows training measured it
    on."""

    ctx_len: int | None = None
    """Tokens per sequence; defaults to the run's."""

    batch_size: int = 8
    """Sequences per forward pass."""

    seed: int | None = None
    """Order of the held-out rows; defaults to the run's seed."""

    splice_all: bool = False
    """Also splice all hookpoints of each architecture at once."""

    device: str = "auto"
    """`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`."""

    reads: str | None = None
    """`input` or `output`: what the coders of a plain sparsify directory read,
    overriding cfg.json; None infers it (see `transcoders.hub`)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "ctx_len"):
            if getattr(self, name) is not None:
                check.positive(name, getattr(self, name))
        check.positive("batch_size", self.batch_size)
        if self.seed is not None:
            check.non_negative("seed", self.seed)
        check.device("device", self.device)
        for name in ("model", "dataset", "eval_split"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise check.ConfigError(
                    f"{check.flag(name)} is empty: name one, or leave the option out to "
                    "use the run's"
                )
        if self.reads not in (None, "input", "output"):
            raise check.ConfigError(f"--reads is input or output, got {self.reads!r}")

    def resolve(self, manifest: Manifest | None) -> EvalConfig:
        """Fill the unset fields from the run's training config, else from
        `TrainingConfig`'s defaults."""
        run = manifest.config if manifest is not None else {}
        model = self.model if self.model is not None else run.get("model")
        if model is None:
            raise MissingModelError(
                f"{self.run_dir} has no {MANIFEST_FILE} saying which model its coders "
                "were trained on: pass --model"
            )
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"

        def unset(name: str, run_name: str | None = None):
            value = getattr(self, name)
            if value is not None:
                return value
            return run.get(run_name or name, getattr(TRAINING_DEFAULTS, run_name or name))

        return replace(
            self,
            model=model,
            dataset=unset("dataset"),
            eval_split=unset("eval_split"),
            ctx_len=unset("ctx_len"),
            tokens=unset("tokens", "eval_tokens"),
            seed=unset("seed"),
            device=device,
        )


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    """Evaluate every coder under `cfg.run_dir`; write and return the results."""
    run_dir = Path(cfg.run_dir)
    found = checkpoints.find(run_dir, cfg.reads)
    manifest = Manifest.read(run_dir)
    cfg = cfg.resolve(manifest)
    check_writable(run_dir)
    coders = [(ckpt, ckpt.load(cfg.device)) for ckpt in found]

    model, tokenizer = load_model(cfg.model, device=cfg.device)
    check_hookpoints(model, found, cfg.model)
    corpus = load_corpus(cfg.dataset, split="eval", hf_split=cfg.eval_split)
    rows = tokenize(
        corpus, tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.tokens, seed=cfg.seed,
        documents=True,
    )  # fmt: skip
    input_ids = rows[:]["input_ids"]
    documents = (
        list(rows.with_format(None)["document"]) if "document" in rows.column_names else None
    )
    # Outside a plugin run, what a coder reads and how it centres is measured.
    found, identified = hub.identify(model, found, input_ids, plugin_run=manifest is not None)
    if identified:
        check_hookpoints(model, found, cfg.model)
        coders = [(ckpt, ckpt.load(cfg.device)) for ckpt in found]

    start = time.time()
    results = evaluate_coders(
        model,
        coders,
        input_ids.split(cfg.batch_size),
        splice_all=cfg.splice_all,
        device=cfg.device,
        progress=progress,
    )
    report = {
        "config": asdict(cfg),
        "incomplete": incomplete(manifest, found),
        "identified": identified,
        "tokens": input_ids.numel(),
        "rows": {"count": len(input_ids), "documents": documents},
        "wall_time_s": time.time() - start,
        "results": results,
    }
    save(run_dir, report)
    return report


def check_writable(run_dir: Path) -> None:
    """Refuse before the model runs, rather than after, when the results can't be
    written into the run directory."""
    effective = os.access in os.supports_effective_ids
    if not os.access(run_dir, os.W_OK | os.X_OK, effective_ids=effective):
        raise FileSystemError(
            f"{run_dir} is not writable, and evaluate writes {RESULTS_JSON} and "
            f"{RESULTS_CSV} into the run directory; make it writable, or copy the run "
            "somewhere you can write and evaluate the copy"
        )


def incomplete(manifest: Manifest | None, found: list[Checkpoint]) -> list[str]:
    """Architectures whose training the manifest does not mark complete: a run
    interrupted mid-architecture leaves its last intermediate checkpoint. Nothing is
    known to be unfinished in a plain sparsify folder."""
    if manifest is None:
        return []
    return manifest.unfinished(c.architecture.name for c in found)


def check_hookpoints(
    model: nn.Module, found: list[Checkpoint], model_name: str
) -> None:
    """Every checkpoint's hookpoint exists in the model, and the coder's width fits
    both the activation it reads and the output it predicts."""
    for ckpt in found:
        try:
            resolve_hookpoints(model, [ckpt.hookpoint])
        except HookpointError as err:
            raise HookpointError(f"{ckpt.path}, on model '{model_name}': {err}") from None
    sizes = module_widths(model, sorted({c.hookpoint for c in found}))
    for ckpt in found:
        d_in = ckpt.d_in()
        site_widths = dict(zip(("input", "output"), sizes[ckpt.hookpoint]))
        for site in dict.fromkeys([ckpt.architecture.reads, "output"]):
            if site_widths[site] != d_in:
                raise HookpointError(
                    f"{ckpt.path / CONFIG_FILE}: coder width d_in={d_in}, "
                    f"but the {site} of module '{ckpt.hookpoint}' in model "
                    f"'{model_name}' is {site_widths[site]} wide (trained on another "
                    "model or hookpoint?)"
                )


@dataclass
class _Spliced:
    """Running CE and KL of one spliced configuration."""

    ce: metrics.Mean = field(default_factory=metrics.Mean)
    kl: metrics.Mean = field(default_factory=metrics.Mean)


def _coder_replacement(
    ckpt: Checkpoint,
    coder: SparseCoder,
    recon: metrics.RowReconstruction | None = None,
    latents: metrics.Latents | None = None,
) -> Replacement:
    def replacement(inputs: Tensor, outputs: Tensor) -> Tensor:
        source = inputs if ckpt.architecture.reads == "input" else outputs
        out = coder(source.flatten(0, 1).to(coder.dtype))
        if recon is not None:
            recon.add(out.sae_out.view_as(outputs), outputs)
        if latents is not None:
            latents.add(out.latent_acts, out.latent_indices)
        return out.sae_out

    return replacement


@torch.no_grad()
def evaluate_coders(
    model: nn.Module,
    coders: list[tuple[Checkpoint, SparseCoder]],
    batches: Iterable[Tensor],
    *,
    splice_all: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[dict]:
    """One result row per coder (and per architecture with `splice_all`).

    The clean logits of each batch are computed once and shared by every coder.
    Reconstruction and latent statistics come from the single-hookpoint splices,
    where the module sees exactly its clean input. Each row's `per_row` holds the
    sums its FVU, ΔCE and KL are made of, one per sequence, for the paired
    bootstrap (`bootstrap.paired_difference`).
    """
    tally = _Tally(coders, splice_all)
    batches = list(batches)
    for ids in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        tally.add(model, ids.to(device))
    return tally.rows()


class _Tally:
    """Running sums of every splice of one evaluation, batch by batch."""

    def __init__(self, coders: list[tuple[Checkpoint, SparseCoder]], splice_all: bool):
        self.coders = coders
        self.splice_all = splice_all
        self.hookpoints = sorted({c.hookpoint for c, _ in coders})
        self.groups: dict[str, list[int]] = {}
        for i, (ckpt, _) in enumerate(coders):
            self.groups.setdefault(ckpt.architecture.name, []).append(i)
        self.ce_clean = metrics.Mean()
        self.ce_zero = {h: metrics.Mean() for h in self.hookpoints}
        self.single = [_Spliced() for _ in coders]
        self.recon = [metrics.RowReconstruction() for _ in coders]
        self.latents = [metrics.Latents(coder.num_latents) for _, coder in coders]
        self.together = {a: _Spliced() for a in self.groups}
        zero_sets = {frozenset(coders[i][0].hookpoint for i in g) for g in self.groups.values()}
        self.ce_zero_together = {s: metrics.Mean() for s in zero_sets} if splice_all else {}

    def add(self, model: nn.Module, ids: Tensor) -> None:
        """Run one batch clean, zero-ablated, and spliced with every coder."""

        def run(replacements: dict[str, Replacement]) -> Tensor:
            with splice(model, replacements):
                return model(ids, use_cache=False).logits

        logits = run({})
        self.ce_clean.add(metrics.next_token_nll(logits, ids))
        clean_logp = logits.float().log_softmax(-1)
        del logits

        def measure(spliced: _Spliced, replacements: dict[str, Replacement]) -> None:
            logits = run(replacements)
            spliced.ce.add(metrics.next_token_nll(logits, ids))
            spliced.kl.add(metrics.next_token_kl(clean_logp, logits))

        for h in self.hookpoints:
            self.ce_zero[h].add(metrics.next_token_nll(run({h: zero_ablation}), ids))
        for s, mean in self.ce_zero_together.items():
            mean.add(metrics.next_token_nll(run({h: zero_ablation for h in s}), ids))

        for i, (ckpt, coder) in enumerate(self.coders):
            fn = _coder_replacement(ckpt, coder, self.recon[i], self.latents[i])
            measure(self.single[i], {ckpt.hookpoint: fn})

        if self.splice_all:
            for arch, members in self.groups.items():
                fns = {
                    self.coders[i][0].hookpoint: _coder_replacement(*self.coders[i])
                    for i in members
                }
                measure(self.together[arch], fns)

    def rows(self) -> list[dict]:
        """The result rows, each architecture's splice-all row after its others."""
        results = [self._coder_row(i) for i in range(len(self.coders))]
        if self.splice_all:
            results += [self._together_row(a, m) for a, m in self.groups.items()]
        return sorted(results, key=lambda r: (r["architecture"], r["hookpoint"] == ALL))

    def _coder_row(self, i: int) -> dict:
        ckpt, coder = self.coders[i]
        recon, latents = self.recon[i], self.latents[i]
        zero = self.ce_zero[ckpt.hookpoint].value
        row = _row(
            ckpt.architecture.name, ckpt.hookpoint, self.ce_clean, self.single[i], zero,
            latents.tokens,
        )  # fmt: skip
        row["per_row"].update(sse=recon.row_sse, target_ss=recon.row_target_ss())
        fvu = recon.fvu
        row.update(
            fvu=fvu,
            explained_variance=1 - fvu,
            l0=latents.l0,
            dead_fraction=latents.dead_fraction,
            num_latents=coder.num_latents,
            k=coder.cfg.k,
            checkpoint=str(ckpt.path),
            firing_histogram=latents.histogram(),
        )
        return row

    def _together_row(self, arch: str, members: list[int]) -> dict:
        spliced = sorted(self.coders[i][0].hookpoint for i in members)
        zero = self.ce_zero_together[frozenset(spliced)].value
        tokens = self.latents[members[0]].tokens
        row = _row(arch, ALL, self.ce_clean, self.together[arch], zero, tokens)
        row["spliced_hookpoints"] = spliced
        return row


def _row(
    arch: str,
    hookpoint: str,
    ce_clean: metrics.Mean,
    spliced: _Spliced,
    zero: float,
    tokens: int,
) -> dict:
    clean, ce = ce_clean.value, spliced.ce.value
    rows = len(ce_clean.row_sums)
    delta_nll = [s - c for s, c in zip(spliced.ce.row_sums, ce_clean.row_sums)]
    return {
        "architecture": arch,
        "hookpoint": hookpoint,
        "ce_clean": clean,
        "ce_spliced": ce,
        "delta_ce": ce - clean,
        "kl": spliced.kl.value,
        "ce_zero": zero,
        "loss_recovered": metrics.loss_recovered(clean, ce, zero),
        "tokens": tokens,
        "per_row": {
            "predictions": ce_clean.count // rows if rows else 0,
            "delta_nll": delta_nll,
            "kl": spliced.kl.row_sums,
        },
    }


def table(results: list[dict]) -> pd.DataFrame:
    """The result rows as a frame with the CSV's columns (blank where not defined)."""
    frame = pd.DataFrame(results).reindex(columns=COLUMNS)
    return frame.astype({"num_latents": "Int64", "k": "Int64"})


def save(run_dir: Path, report: dict) -> None:
    """Write evaluation.json (NaN as null) and evaluation.csv, each atomically."""
    write_json(run_dir / RESULTS_JSON, _nan_to_none(report))
    with atomic_path(run_dir / RESULTS_CSV) as tmp:
        table(report["results"]).to_csv(tmp, index=False)


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
