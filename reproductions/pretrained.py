"""`--pretrained`: EleutherAI's released checkpoints instead of training.

The hub repositories use sparsify's layout (`<hookpoint>/{cfg.json,sae.safetensors}`).
They are downloaded (or found in the local HF cache when offline) and linked into a
run directory of this plugin's layout, so evaluation and autointerp read them like
any trained run.

Compatibility trap: before sparsify PR #49 (Feb 2025) transcoders subtracted `b_dec`
from their *input* too. A checkpoint trained that way but loaded by a newer sparsify
silently encodes uncentred inputs. Every transcoder is therefore checked on a few
batches: if centring its input by `b_dec` explains clearly more variance, the
checkpoint is taken to be legacy and a corrected copy is written with the centring
folded into the encoder bias (W_enc (x − b_dec) + b_enc = W_enc x + (b_enc − W_enc b_dec)),
which is exact. Both FVUs and the decision are recorded in `pretrained.json`.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from sparsify import SparseCoder

from transcoders.activations import module_io
from transcoders.atomic import write_json
from transcoders.checkpoints import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE
from transcoders.data import load_corpus, load_model, tokenize
from transcoders.errors import UserError
from transcoders.evaluation.metrics import Reconstruction

from .presets import PRETRAINED, Preset
from .stages import Stages, config_key

RECORD_FILE = "pretrained.json"
CHECK_TOKENS = 2048
"""Held-out tokens each transcoder's centring is checked on."""

LEGACY_RATIO = 0.8
"""A transcoder is legacy when centring its input gives FVU below this fraction of
the FVU as loaded."""


def fold_input_centring(coder: SparseCoder) -> None:
    """Make `coder` encode as if `b_dec` were subtracted from its input."""
    with torch.no_grad():
        coder.encoder.bias -= coder.encoder.weight @ coder.b_dec


def centring_check(
    coder: SparseCoder, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """FVU of `coder` predicting `y` from `x` as loaded, and with the legacy input
    centring folded in (exactly the correction `fold_input_centring` applies)."""
    folded = copy.deepcopy(coder)
    fold_input_centring(folded)
    scores = []
    with torch.no_grad():
        for candidate in (coder, folded):
            fvu = Reconstruction()
            fvu.add(candidate(x.to(candidate.dtype)).sae_out, y)
            scores.append(fvu.fvu)
    return scores[0], scores[1]


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
        rows = tokenize(
            load_corpus(preset.dataset, "eval", hf_split=preset.eval_split),
            tokenizer, ctx_len=min(preset.ctx_len, 256), seed=preset.seed,
        )
        rows = rows.select(range(min(len(rows), CHECK_TOKENS // rows[0]["input_ids"].numel())))
        record = {}
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
                dest = run_dir / arch / hookpoint
                entry = {"repo": repo, "source": str(folder)}
                coder = SparseCoder.load_from_disk(folder)
                if coder.cfg.transcode:
                    acts = module_io(model, [hookpoint], rows[:]["input_ids"])[hookpoint]
                    x, y = acts["input"].flatten(0, 1), acts["output"].flatten(0, 1)
                    as_loaded, centred = centring_check(coder, x, y)
                    legacy = centred < LEGACY_RATIO * as_loaded
                    entry.update(fvu_as_loaded=as_loaded, fvu_input_centred=centred,
                                 legacy_input_centring=legacy)
                    print(f"{arch}/{hookpoint}: FVU {as_loaded:.3f} as loaded, "
                          f"{centred:.3f} with input centring -> "
                          + ("legacy, folding b_dec into the encoder bias" if legacy else "current"))
                    if legacy:
                        fold_input_centring(coder)
                        _write_corrected(coder, dest)
                        record[f"{arch}/{hookpoint}"] = entry
                        continue
                _link(folder, dest)
                record[f"{arch}/{hookpoint}"] = entry

        write_json(run_dir / MANIFEST_FILE, {
            "config": {"model": preset.model, "dataset": preset.dataset,
                       "eval_split": preset.eval_split, "ctx_len": preset.ctx_len,
                       "seed": preset.seed, "hookpoints": sorted({k.split("/", 1)[1] for k in record})},
            "architectures": {arch: {"status": "complete", "source": repo} for arch, repo in repos.items()},
        })
        write_json(run_dir / RECORD_FILE, record)

    stages.run("pretrained", key, run_dir / RECORD_FILE, work)
    return run_dir
