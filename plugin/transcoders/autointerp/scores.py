"""Scoring explanations and their shuffled controls: score lists saved as they finish,
saved ones reused, and each latent's metrics computed from the saved list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..atomic import atomic_path, write_json
from . import stats
from .config import AutointerpConfig
from .delphi_compat import import_delphi, seed_scorer
from .runner import run_all
from .sampling import latent_name
from .state import AutointerpError, distrust, read_json

import_delphi()
from delphi.latents import LatentRecord  # noqa: E402

SHUFFLED = "_shuffled"
"""Suffix of a scorer's folder of shuffled-explanation controls."""
DONORS_FILE = "shuffled_donors.json"


@dataclass(frozen=True)
class ScoreJob:
    """One latent to score with one scorer and one explanation."""

    record: LatentRecord
    scorer: str
    explanation: str
    """The latent's own explanation, or for a control another latent's."""
    suffix: str
    """Empty for the latent's own explanation, `SHUFFLED` for a control."""

    @property
    def key(self) -> tuple[str, str, str]:
        """(scorer, suffix, latent name): how `score` returns its metrics."""
        return self.scorer, self.suffix, latent_name(self.record)

    @property
    def file(self) -> Path:
        """The score list's file, relative to the scores folder."""
        return Path(f"{self.scorer}{self.suffix}") / f"{latent_name(self.record)}.txt"


def score_jobs(records, scorers, explanations: dict, donors: dict) -> list[ScoreJob]:
    """Every scorer on each latent's own explanation, and on its donor's (`donors`)
    as the shuffled control."""
    jobs = []
    for record in records:
        name = latent_name(record)
        for scorer in scorers:
            jobs.append(ScoreJob(record, scorer, explanations[name], ""))
            if name in donors:
                jobs.append(ScoreJob(record, scorer, explanations[donors[name]], SHUFFLED))
    return jobs


def score(
    jobs: list[ScoreJob], scorers: dict, folder: Path, label: str, cfg: AutointerpConfig
) -> dict[tuple[str, str, str], dict]:
    """Metrics by `ScoreJob.key`, loading valid saved scores and scoring the rest,
    each saved as it finishes."""
    metrics, todo = {}, []
    for job in jobs:
        found = read_score(folder / job.file, job.scorer)
        if found is None:
            todo.append(job)
        else:
            metrics[job.key] = found

    async def one(job: ScoreJob, bar):
        record, name = job.record, job.scorer
        scorer = scorers[name]
        # Scorers read the explanation off the record; give each job its own copy.
        mine = LatentRecord(
            record.latent, examples=record.examples, not_active=record.not_active,
            train=record.train, test=record.test, explanation=job.explanation,
            extra_examples=record.not_active,
        )
        client = getattr(scorer, "client", None)
        seen = len(client.errors) if client is not None else 0
        seed_scorer(scorer, f"{cfg.seed}/{name}{job.suffix}/{latent_name(record)}")
        result = await scorer(mine)
        if client is not None and len(client.errors) > seen:
            err = client.errors[-1]
            raise AutointerpError(
                f"The {name} judge failed on {record.latent}: {err}. Finished latents are "
                f"saved in {folder}; rerun the same command to continue."
            ) from err
        data = orjson.dumps(result.score)
        with atomic_path(folder / job.file) as tmp:
            tmp.write_bytes(data)
        # From the saved bytes, so a resumed run computes exactly what a fresh one does.
        metrics[job.key] = latent_metrics(name, orjson.loads(data))
        bar.update()

    run_all(todo, one, f"Scoring {label}", len(jobs) - len(todo), len(jobs), cfg)
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


def forget_stale_scores(root: Path, prefix: str, donors: dict, fresh: set[str]) -> None:
    """Delete this hookpoint's scores, of every scorer, made with an explanation other
    than the one now on disk: those of latents explained in this run, and controls
    whose donor changed or was explained in this run. Then record the pairing (other
    hookpoints' entries kept)."""
    file = root / DONORS_FILE
    old = read_json(file, dict, "rescoring this hookpoint's shuffled controls") or {}
    folders = (root / "scores").iterdir() if (root / "scores").is_dir() else ()
    for folder in folders:
        for saved in folder.glob(f"{prefix}*.txt"):
            latent = saved.stem
            if folder.name.endswith(SHUFFLED):
                stale = old.get(latent) != donors.get(latent) or donors.get(latent) in fresh
            else:
                stale = latent in fresh
            if stale:
                saved.unlink()
    kept = {k: v for k, v in old.items() if not k.startswith(prefix)}
    write_json(file, {**kept, **donors})
