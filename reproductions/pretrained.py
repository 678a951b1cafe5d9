"""`--pretrained`: EleutherAI's released checkpoints instead of training.

The hub repositories use sparsify's layout (`<hookpoint>/{cfg.json,sae.safetensors}`).
They are downloaded (or found in the local HF cache when offline) and linked into a
run directory of this plugin's layout, so evaluation and autointerp read them like
any trained run.

Compatibility trap: sparsify's format before PR #49 (Feb 2025). Its transcoders have
no `transcode` key in cfg.json and subtract `b_dec` from their input too. The repo says
which architecture a folder holds; `transcoders.hub.identify` checks every coder that
reads the module input on a few batches: if centring its input by `b_dec` explains
clearly more variance, the checkpoint is legacy. Coders not already in sparsify's
current transcoder form are written as a corrected copy (`transcode: true`, any
centring folded into the encoder bias, which is exact); the others are linked. Both
FVUs and the decision are recorded in `pretrained.json`.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import snapshot_download
from sparsify import SparseCoder

from transcoders import checkpoints, hub
from transcoders.atomic import write_json
from transcoders.checkpoints import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from transcoders.data import load_model
from transcoders.errors import UserError

from .presets import PRETRAINED, Preset
from .stages import Stages, config_key

RECORD_FILE = "pretrained.json"


def _hookpoint_name(folder: str, module_names: set[str]) -> str:
    """Some repos name hookpoints from the causal-LM wrapper (`model.layers.0.mlp`)."""
    if folder not in module_names and folder.startswith("model."):
        return folder.removeprefix("model.")
    return folder


def _link(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        target = dest / name
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(source.resolve() / name, target)


def _write_corrected(coder: SparseCoder, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        coder.save_to_disk(staging)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pretrained_stage(stages: Stages, preset: Preset) -> Path:
    """Download/link the released checkpoints for `preset`; returns the run dir."""
    repos = PRETRAINED.get(preset.name)
    if repos is None:
        raise UserError(
            f"--pretrained has released checkpoints for: {', '.join(PRETRAINED)}; "
            f"not for preset '{preset.name}'"
        )
    key = config_key({"repos": repos, "model": preset.model, "hookpoints": preset.hookpoints})
    run_dir = stages.out / f"pretrained-{key}"

    def work() -> None:
        model, tokenizer = load_model(preset.model, device="cpu")
        names = {n for n, _ in model.base_model.named_modules() if n}
        found, sources = [], {}
        for arch, repo in repos.items():
            patterns = [f"{p}/*" for p in preset.hookpoints]
            patterns += [f"model.{p}" for p in patterns]
            snapshot = Path(snapshot_download(repo, allow_patterns=patterns))
            folders = sorted(f for f in snapshot.iterdir() if (f / CONFIG_FILE).is_file())
            chosen = {
                _hookpoint_name(f.name, names): f
                for f in folders
                if any(fnmatch.fnmatchcase(_hookpoint_name(f.name, names), p) for p in preset.hookpoints)
            }
            if not chosen:
                raise UserError(f"{repo} has no checkpoint matching {list(preset.hookpoints)}")
            for hookpoint, folder in chosen.items():
                # The repo names the architecture; an old-format cfg.json cannot.
                found.append(checkpoints.at(folder, hookpoint, arch))
                sources[folder] = repo
        ids = hub.check_tokens(tokenizer, preset.dataset, "eval", preset.eval_split)
        found, measured = hub.identify(model, found, ids, plugin_run=False)
        measured = {m["checkpoint"]: m for m in measured}
        record = {}
        for ckpt in found:
            arch, dest = ckpt.architecture.name, run_dir / ckpt.architecture.name / ckpt.hookpoint
            entry = {"repo": sources[ckpt.path], "source": str(ckpt.path)}
            if ckpt.architecture.reads == "input":
                m = measured[str(ckpt.path)]
                entry.update(fvu_uncentred=m["fvu_uncentred"],
                             fvu_input_centred=m["fvu_input_centred"],
                             legacy_input_centring=hub.centres_input(ckpt))
            if ckpt.architecture.reads == "input" and not hub.saved_as_current(ckpt):
                _write_corrected(ckpt.load(), dest)
            else:
                _link(ckpt.path, dest)
            record[f"{arch}/{ckpt.hookpoint}"] = entry

        write_json(run_dir / MANIFEST_FILE, {
            "config": {"model": preset.model, "dataset": preset.dataset,
                       "eval_split": preset.eval_split, "ctx_len": preset.ctx_len,
                       "seed": preset.seed, "hookpoints": sorted({k.split("/", 1)[1] for k in record})},
            "architectures": {arch: {"status": "complete", "source": repo} for arch, repo in repos.items()},
        })
        write_json(run_dir / RECORD_FILE, record)

    stages.run("pretrained", key, run_dir / RECORD_FILE, work)
    return run_dir
