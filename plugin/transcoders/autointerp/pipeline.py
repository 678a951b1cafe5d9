"""Autointerp of a run directory: cache latents, explain a seeded sample of them, score
each explanation and a shuffled control with Delphi's scorers, and summarise.

Output, one Delphi results folder per architecture (`OUT` defaults to
`RUN_DIR/autointerp`):

    OUT/<arch>/latents/<hookpoint>/...       Delphi's latent cache (cache.py)
    OUT/<arch>/log/hookpoint_firing_counts.pt
    OUT/<arch>/explanations/<hookpoint>_latent<i>.txt    JSON string, as Delphi writes
    OUT/<arch>/scores/<scorer>/<hookpoint>_latent<i>.txt  Delphi's score list
    OUT/<arch>/scores/<scorer>_shuffled/...  the same latent scored with another
                                             latent's explanation
    OUT/<arch>/shuffled_donors.json          latent -> whose explanation it was given
    OUT/latents.csv, OUT/summary.json, OUT/summary.csv

Every file is written atomically as soon as its latent finishes, and a rerun skips
what exists, so an interrupted run loses at most the latents in flight. A file that
does not read back as valid is reported and redone (`state`); an explanation the
explainer's answer did not contain is never saved, so a rerun asks again. One run
writes an output folder at a time (`runlock`).
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .. import checkpoints, hub, runlock
from ..atomic import atomic_path, write_json
from ..data import EMBEDDED, load_corpus, tokenize
from ..run import CheckpointError, Manifest, autointerp_dir, warn_unfinished
from . import cache, models, stats
from .config import AutointerpConfig
from .explanations import explain
from .sampling import (
    latent_counts, latent_name, latent_records, load_tokenizer, name_prefix, sample,
)
from .scores import DONORS_FILE, SHUFFLED, forget_stale_scores, score, score_jobs
from .settings import SETTINGS_FILE, check_same_settings
from .state import AutointerpError
from .summary import LATENTS_CSV, SUMMARY_CSV, SUMMARY_JSON, summarise


def run_autointerp(run_dir: str | Path, cfg: AutointerpConfig) -> dict:
    """Cache, explain, score and summarise; returns the summary written to disk."""
    run_dir = Path(run_dir)
    try:
        ckpts = checkpoints.find(run_dir, cfg.reads)
        # Outside a plugin run, what a coder reads and how it centres is measured.
        ckpts = hub.identify_run(run_dir, ckpts, model=cfg.model, dataset=cfg.dataset,
                                 split=cfg.split, device=cfg.device)
    except CheckpointError as err:
        raise AutointerpError(str(err)) from err
    ckpts = [
        c for c in ckpts
        if (cfg.architectures is None or c.architecture.name in cfg.architectures)
        and (cfg.hookpoints is None or c.hookpoint in cfg.hookpoints)
    ]
    if not ckpts:
        raise AutointerpError(
            f"No checkpoint in {run_dir} matches architectures={cfg.architectures} "
            f"hookpoints={cfg.hookpoints}"
        )
    out = Path(cfg.out) if cfg.out else autointerp_dir(run_dir)
    manifest = _manifest(run_dir, ckpts)
    model_name = cfg.model or manifest.get("model", EMBEDDED)
    dataset = cfg.dataset or manifest.get("dataset", EMBEDDED)
    with runlock.hold(out):
        return _run(ckpts, out, cfg, model_name, dataset)


def _run(ckpts, out: Path, cfg: AutointerpConfig, model_name: str, dataset: str) -> dict:
    settings = check_same_settings(out, cfg, model_name, dataset)
    # Models first: a bad client spec should fail before the slow caching pass.
    explainer, judge = models.explainer_and_judge(cfg)
    scorers = {name: models.scorer(name, judge, cfg) for name in cfg.scorers}
    write_json(out / SETTINGS_FILE, settings)

    cache_cfg = cfg.cache_config(model_name, dataset)
    tokenizer = load_tokenizer(model_name)
    if not cache.is_complete(out, ckpts, cache_cfg, cfg.n_splits):
        # Explanations and scores of an older cache (other coders) are stale.
        for arch in {c.architecture.name for c in ckpts}:
            for folder in ("explanations", "scores"):
                shutil.rmtree(out / arch / folder, ignore_errors=True)
            (out / arch / DONORS_FILE).unlink(missing_ok=True)
        _cache(ckpts, out, cfg, model_name, dataset, cache_cfg)

    rows = []
    for ckpt in ckpts:
        rows += _explain_and_score(ckpt, out, cfg, tokenizer, explainer, scorers)

    latents_df = pd.DataFrame(rows)
    with atomic_path(out / LATENTS_CSV) as tmp:
        latents_df.to_csv(tmp, index=False)
    summary = summarise(latents_df, cfg)
    summary.config = asdict(cfg)
    data = summary.to_dict()
    write_json(out / SUMMARY_JSON, data)
    with atomic_path(out / SUMMARY_CSV) as tmp:
        pd.DataFrame(data["groups"]).to_csv(tmp, index=False)
    return data


def _manifest(run_dir: Path, ckpts: list[checkpoints.Checkpoint]) -> dict:
    """The run's training config, warning about architectures not fully trained."""
    try:
        manifest = Manifest.read(run_dir)
    except CheckpointError as err:
        raise AutointerpError(str(err)) from err
    warn_unfinished(manifest, [c.architecture.name for c in ckpts])
    return manifest.config if manifest is not None else {}


def _cache(ckpts, out: Path, cfg: AutointerpConfig, model_name: str, dataset: str, cache_cfg: dict):
    from ..data import load_model

    model, tokenizer = load_model(model_name, device=cfg.device)
    corpus = (
        load_corpus(dataset, cfg.split)
        if dataset == EMBEDDED or Path(dataset).exists()
        else load_corpus(dataset, hf_split=cfg.split)
    )
    rows = tokenize(corpus, tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.n_tokens, seed=cfg.seed)
    cache.cache_latents(
        model, ckpts, rows, out, config=cache_cfg, batch_size=cfg.batch_size,
        n_splits=cfg.n_splits,
    )
    del model


def _explain_and_score(ckpt, out: Path, cfg, tokenizer, explainer, scorers) -> list[dict]:
    """Explain and score a seeded sample of one coder's latents; one row per latent
    and (scorer, control), or one for a latent whose explanation did not parse."""
    arch, hp = ckpt.architecture.name, ckpt.hookpoint
    root = out / arch
    label = f"{arch}/{hp}"
    counts = latent_counts(cache.latents_dir(out, arch) / hp, cfg)
    records = latent_records(ckpt, out, cfg, tokenizer, sample(counts, label, cfg))

    explanations, fresh = explain(records, explainer, root / "explanations", label, cfg)
    unparsed = len(records) - len(explanations)
    if unparsed > cfg.max_unparsed * len(records):
        raise AutointerpError(
            f"{label}: {unparsed} of {len(records)} explanations could not be parsed, more "
            f"than --max-unparsed {cfg.max_unparsed:g} allows; check the explainer's model "
            "and prompt. Parsed ones are saved; a rerun asks again for the others."
        )
    parsed = [r for r in records if latent_name(r) in explanations]
    donors = {}
    if len(parsed) >= 2:
        order = stats.derangement(len(parsed), cfg.seed)
        donors = {latent_name(r): latent_name(parsed[j]) for r, j in zip(parsed, order)}
    forget_stale_scores(root, name_prefix(hp), donors, fresh)
    jobs = score_jobs(parsed, scorers, explanations, donors)
    metrics = score(jobs, scorers, root / "scores", label, cfg)

    rows = []
    for record in records:
        base = {
            "architecture": arch, "hookpoint": hp, "latent": record.latent.latent_index,
            "firing_count": int(counts.firing[record.latent.latent_index]),
            "frequency": counts.firing[record.latent.latent_index] / counts.tokens,
            "n_latents": len(counts.firing), "live_latents": counts.live,
            "eligible_latents": len(counts.eligible), "cache_tokens": counts.tokens,
            "explanation": explanations.get(latent_name(record)),
            "explanation_parsed": latent_name(record) in explanations,
        }
        if not base["explanation_parsed"]:
            rows.append(base)
            continue
        for name, suffix in itertools.product(scorers, ("", SHUFFLED)):
            if (name, suffix, latent_name(record)) in metrics:
                row = metrics[name, suffix, latent_name(record)]
                rows.append({**base, "scorer": name, "shuffled": bool(suffix), **row})
    return rows
