"""The reproduction's stages (train, evaluate, autointerp), each cached by its config.

Every stage writes into a folder named by a hash of the config that decides its
output, and records in `<out>/stages.json` what it ran and how long it took. A rerun
with the same config skips finished stages; after a crash, or with a later-stage
flag changed, only the unfinished or changed stages run again (training resumes from
its last checkpoint, autointerp from its last finished latent).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from transcoders.atomic import write_json
from transcoders.autointerp.config import AutointerpConfig
from transcoders.autointerp.summary import SUMMARY_JSON
from transcoders.data.corpus import is_hf
from transcoders.evaluation.evaluate import RESULTS_JSON, EvalConfig
from transcoders.run import MANIFEST_FILE, Manifest, has_manifest
from transcoders.training import TrainingConfig

from .presets import TRAINING_DEFAULTS, Preset

STAGES_FILE = "stages.json"


def config_key(data: Any) -> str:
    """A short stable hash of JSON-able config data."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def training_config(preset: Preset, run_dir: Path) -> TrainingConfig:
    return TrainingConfig(
        out=str(run_dir),
        architectures=list(preset.architectures),
        hookpoints=list(preset.hookpoints),
        model=preset.model,
        dataset=preset.dataset,
        dataset_split=preset.dataset_split,
        eval_split=preset.eval_split,
        k=preset.k,
        expansion_factor=preset.expansion_factor,
        num_latents=preset.num_latents,
        tokens=preset.train_tokens,
        normalize=preset.normalize,
        auxk_alpha=preset.auxk_alpha,
        dead_tokens=preset.dead_tokens,
        k_decay_steps=preset.k_decay_steps,
        # The manifest's held-out FVU is a check, not a result: it needs no more than
        # training's default, whatever the preset evaluates on.
        eval_tokens=min(preset.eval_tokens, TRAINING_DEFAULTS.eval_tokens),
        ctx_len=preset.ctx_len,
        batch_size=preset.batch_size,
        seed=preset.seed,
        device=preset.device,
    )


def eval_config(preset: Preset, run_dir: Path) -> EvalConfig:
    return EvalConfig(
        run_dir=str(run_dir),
        model=preset.model,
        dataset=preset.dataset,
        eval_split=preset.eval_split,
        tokens=preset.eval_tokens,
        ctx_len=preset.ctx_len,
        batch_size=preset.batch_size,
        seed=preset.seed,
        device=preset.device,
    )


def autointerp_config(preset: Preset) -> AutointerpConfig:
    device = preset.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutointerpConfig(
        explainer=preset.explainer,
        scorers=list(preset.scorers),
        scorer_model=preset.scorer_model,
        latents=preset.latents,
        seed=preset.seed,
        model=preset.model,
        dataset=preset.dataset,
        # A HF dataset's held-out rows are a split expression (a train-only dataset
        # has no `eval` split); embedded and local text hold out whole documents.
        split=preset.eval_split if is_hf(preset.dataset) else "eval",
        n_tokens=preset.autointerp_tokens,
        ctx_len=preset.autointerp_ctx_len,
        example_ctx_len=preset.example_ctx_len,
        n_examples_train=preset.n_examples_train,
        n_examples_test=preset.n_examples_test,
        n_non_activating=preset.n_non_activating,
        device=device,
    )


class Stages:
    """The stage records of one work folder.

    A record is trusted only while the file its stage wrote still has the SHA-256
    recorded with it, so a damaged or hand-edited `stages.json`, manifest,
    evaluation or summary is reported and its stage runs again (training resumes;
    autointerp keeps the latents it finished) instead of being read as a result.
    """

    def __init__(self, out: Path, file_name: str = STAGES_FILE):
        self.out = out
        self.file = out / file_name
        self.records = read_records(self.file)

    def run(
        self,
        name: str,
        key: str,
        output: Path,
        work: Callable[[], Any],
        done: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Run `work` unless stage `name` already finished with this `key` and its
        `output` file is as it left it (and `done()` agrees). Returns True when the
        cached result was used."""
        record = self.records.get(name, {})
        if record.get("key") == key:
            if record.get("sha256") == _digest(output) and done():
                print(f"[{name}] cached ({key}), finished in {record['wall_time_s']:.1f} s earlier")
                return True
            print(f"[{name}] {output} is missing or changed since the stage wrote it: running again")
        print(f"[{name}] running ({key})")
        start = time.perf_counter()
        work()
        self.records[name] = {
            "key": key, "wall_time_s": time.perf_counter() - start, "sha256": _digest(output)
        }
        write_json(self.file, self.records)
        return False

    def wall_times(self) -> dict[str, float]:
        return {name: r["wall_time_s"] for name, r in self.records.items()}


def read_records(path: Path) -> dict[str, dict]:
    """Stage records from `path`; {} (with a warning) when it is missing or damaged."""
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        records = None
    valid = isinstance(records, dict) and all(
        isinstance(r, dict) and isinstance(r.get("key"), str)
        and isinstance(r.get("wall_time_s"), (int, float))
        for r in records.values()
    )
    if not valid:
        print(f"warning: {path} is damaged; ignoring it, every stage checks its output again")
        return {}
    return records


def _digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_stage(stages: Stages, preset: Preset) -> Path:
    """Train (or resume, or reuse) every architecture; returns the run directory."""
    from transcoders.training import train

    probe = training_config(preset, Path("."))
    key = config_key(probe.identity())
    run_dir = stages.out / f"train-{key}"
    cfg = replace(probe, out=str(run_dir))

    def done() -> bool:
        manifest = Manifest.read(run_dir)
        return manifest is not None and not manifest.unfinished(preset.architectures)

    stages.run("train", key, run_dir / MANIFEST_FILE,
               lambda: train(cfg, resume=has_manifest(run_dir)), done)
    return run_dir


def evaluate_stage(stages: Stages, preset: Preset, run_dir: Path) -> dict:
    from transcoders.evaluation import evaluate

    cfg = eval_config(preset, run_dir)
    key = config_key({"run": run_dir.name, **cfg.__dict__, "run_dir": None})
    output = run_dir / RESULTS_JSON
    # An evaluation written before per-row statistics were recorded has no "rows"
    # for the paired bootstrap: evaluate again.
    stages.run("evaluate", key, output, lambda: evaluate(cfg),
               lambda: "rows" in json.loads(output.read_text()))
    return json.loads((run_dir / RESULTS_JSON).read_text())


def autointerp_run_config(preset: Preset, run_dir: Path) -> AutointerpConfig:
    """The autointerp config of `preset`, writing into its folder under `run_dir`."""
    from transcoders.autointerp.settings import folder_settings

    cfg = autointerp_config(preset)
    # Keyed by what the folder's settings guard compares, so a change that leaves the
    # results on disk valid (more latents, another scorer, the device, client
    # timeouts) resumes in the same folder instead of starting a new one.
    folder_key = config_key(folder_settings(cfg, cfg.model, cfg.dataset))
    return replace(cfg, out=str(run_dir / f"autointerp-{folder_key}"))


def autointerp_stage(stages: Stages, preset: Preset, run_dir: Path) -> dict:
    from transcoders.autointerp.pipeline import run_autointerp

    cfg = autointerp_run_config(preset, run_dir)
    summary = Path(cfg.out) / SUMMARY_JSON
    stages.run("autointerp", config_key(cfg.__dict__), summary, lambda: run_autointerp(run_dir, cfg))
    return json.loads(summary.read_text())


def browse_stage(stages: Stages, preset: Preset, run_dir: Path, out: Path) -> Path:
    """Build the latent browser of the autointerp results into `out`; returns it."""
    from transcoders.browse.site import build_site

    cfg = autointerp_run_config(preset, run_dir)
    index = out / "index.html"
    summary = Path(cfg.out) / SUMMARY_JSON
    key = config_key({"autointerp": _digest(summary), "out": str(out)})
    stages.run("browse", key, index, lambda: build_site(run_dir, cfg.out, out, device=cfg.device))
    return out
