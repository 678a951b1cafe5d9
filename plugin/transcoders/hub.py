"""Sparse coders from outside a plugin run (the hub, a plain sparsify folder): which
activation each reads, and whether it centres its input by `b_dec`.

Before sparsify PR #49 (Feb 2025) `transcode` was a `TrainConfig` field, so a
transcoder saved then has no `transcode` key in its cfg.json, and sparsify 1.3 loads
it as an SAE (`transcode=False`). Transcoders of that time also encoded
`W_enc (x − b_dec)`, which is what sparsify still computes for an SAE. The rules:

- `skip_connection: true` means a transcoder, whatever `transcode` says (Delphi's
  loader decides the same way: a skip term maps the module input to its output);
- a `transcode` key says what it says;
- no `transcode` key is ambiguous (an old transcoder, or an SAE): `identify` feeds
  the coder the module's input and its output on a few batches and keeps the site
  that reconstructs the output clearly better; where neither is clearly better it
  stops with an error asking for `--reads input|output`, which also overrides the
  rules for a plain directory.

Every coder that reads the module input and comes from outside a plugin run is then
checked for the legacy centring: if subtracting `b_dec` from its input clearly
changes how well it predicts, the better form is used, with the centring folded
into the encoder bias (`W_enc (x − b_dec) + b_enc = W_enc x + (b_enc − W_enc b_dec)`,
exact). Runs of `transcoders train` carry their architecture in their layout and
manifest and are trusted as they are.

`import_released` brings released hub repositories (one per architecture) into a run
directory, applying these checks once, so that every later stage reads them like a
trained run.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from sparsify import SparseCoder
from torch import Tensor, nn

from .activations import base_of, module_io
from .architectures import Site
from .atomic import write_json
from .errors import UserError
from .run import CONFIG_FILE, COMPLETE, WEIGHTS_FILE, Manifest, coder_dir

if TYPE_CHECKING:
    from .checkpoints import Checkpoint

CHECK_TOKENS = 2048
"""Tokens each coder's reading site and centring are measured on."""

CLEAR_RATIO = 0.8
"""One form is clearly better when its FVU is below this fraction of the other's."""


class AmbiguousCheckpoint(UserError):
    """A coder whose cfg.json and measured behaviour do not say what it reads."""


def reads_from_config(cfg: Mapping) -> Site | None:
    """What a sparsify cfg.json says its coder reads; None when it does not say."""
    if cfg.get("skip_connection"):
        return "input"
    if "transcode" not in cfg:
        return None
    return "input" if cfg["transcode"] else "output"


def fold_input_centring(coder: SparseCoder) -> None:
    """Make `coder` encode as if `b_dec` were subtracted from its input."""
    with torch.no_grad():
        coder.encoder.bias -= coder.encoder.weight @ coder.b_dec


def as_transcoder(coder: SparseCoder, input_centred: bool | None = None) -> SparseCoder:
    """`coder` in sparsify's current transcoder form (`transcode=True`, no centring
    of its input), computing the same function when `input_centred` is None (an
    old-format cfg loads as an SAE, which centres), else with or without centring."""
    centred = not coder.cfg.transcode if input_centred is None else input_centred
    coder.cfg = dataclasses.replace(coder.cfg, transcode=True)
    if centred:
        fold_input_centring(coder)
    return coder


def fvu(prediction: Tensor, target: Tensor) -> float:
    """Fraction of `target`'s variance (pooled over features) `prediction` misses."""
    target = target.detach().double()
    residual = (target - prediction.detach().double()).pow(2).sum()
    return float(residual / (target - target.mean(0)).pow(2).sum())


@torch.no_grad()
def centring_check(coder: SparseCoder, x: Tensor, y: Tensor) -> tuple[float, float]:
    """FVU of the transcoder-form `coder` predicting `y` from `x` as it is, and with
    the legacy input centring folded in (the correction `fold_input_centring` makes)."""
    folded = copy.deepcopy(coder)
    fold_input_centring(folded)
    return tuple(fvu(c(x.to(c.dtype)).sae_out, y) for c in (coder, folded))


def clearly_better(a: float, b: float) -> bool:
    """`a` explains some variance and clearly more than `b`."""
    return a < 1 and a < CLEAR_RATIO * b


def _needs_check(ckpt: Checkpoint, plugin_run: bool) -> bool:
    return ckpt.ambiguous or (ckpt.architecture.reads == "input" and not plugin_run)


def identify(
    model: nn.Module,
    found: list[Checkpoint],
    input_ids: Tensor,
    *,
    plugin_run: bool,
) -> tuple[list[Checkpoint], list[dict]]:
    """Resolve ambiguous checkpoints and, outside a plugin run, check the input
    centring of every coder reading the module input; measured on the first
    `CHECK_TOKENS` of `input_ids`. Returns the checkpoints as they should be loaded
    and one record per measured coder (also printed to stderr)."""
    todo = [c for c in found if _needs_check(c, plugin_run)]
    if not todo:
        return found, []
    rows = max(1, CHECK_TOKENS // input_ids.shape[1])
    device = next(model.parameters()).device
    acts = module_io(model, sorted({c.hookpoint for c in todo}), input_ids[:rows].to(device))
    resolved, records = {}, []
    for ckpt in todo:
        site = acts[ckpt.hookpoint]
        x, y = site["input"].flatten(0, 1), site["output"].flatten(0, 1)
        record = {"checkpoint": str(ckpt.path), "hookpoint": ckpt.hookpoint}
        if ckpt.ambiguous and x.shape[-1] != y.shape[-1]:
            # A sparsify coder decodes into the width it encodes from: only an SAE fits.
            ckpt = ckpt.reading("output")
        if ckpt.ambiguous:
            # As sparsify loads it (an SAE, centring what it reads), and as a
            # transcoder in whichever centring fits better.
            sae = ckpt.load_saved(device)
            reading_output = fvu(sae(y.to(sae.dtype)).sae_out, y)
            reading_input = min(centring_check(as_transcoder(ckpt.load_saved(device), False), x, y))
            record.update(fvu_reading_input=reading_input, fvu_reading_output=reading_output)
            if clearly_better(reading_input, reading_output):
                ckpt = ckpt.reading("input")
            elif clearly_better(reading_output, reading_input):
                ckpt = ckpt.reading("output")
            else:
                raise AmbiguousCheckpoint(
                    f"{ckpt.path}: cfg.json has no 'transcode' key (sparsify's format "
                    "before Feb 2025), and reading the module input (FVU "
                    f"{reading_input:.3f}) or output (FVU {reading_output:.3f}) fits "
                    "about as well: pass --reads input (a transcoder) or --reads output "
                    "(an SAE)"
                )
        if ckpt.architecture.reads == "input" and not plugin_run:
            uncentred, centred = centring_check(as_transcoder(ckpt.load_saved(device), False), x, y)
            centring = None
            if clearly_better(centred, uncentred):
                centring = True
            elif clearly_better(uncentred, centred):
                centring = False
            ckpt = dataclasses.replace(ckpt, input_centred=centring)
            record.update(fvu_uncentred=uncentred, fvu_input_centred=centred,
                          input_centred=centring)
        record["architecture"] = ckpt.architecture.name
        resolved[ckpt.path] = ckpt
        records.append(record)
        print(_describe(record), file=sys.stderr)
    return [resolved.get(c.path, c) for c in found], records


def _describe(record: dict) -> str:
    parts = [f"{record['checkpoint']}: {record['architecture']}"]
    if "fvu_reading_input" in record:
        parts.append(
            f"no 'transcode' in cfg.json; FVU {record['fvu_reading_input']:.3f} reading "
            f"the input, {record['fvu_reading_output']:.3f} reading the output"
        )
    if "fvu_uncentred" in record:
        verdict = {True: "input centred by b_dec (legacy)", False: "input not centred",
                   None: "centring makes no clear difference; as cfg.json says"}
        parts.append(
            f"FVU {record['fvu_uncentred']:.3f} uncentred, "
            f"{record['fvu_input_centred']:.3f} with input centring -> "
            + verdict[record["input_centred"]]
        )
    return "; ".join(parts)


def centres_input(ckpt: Checkpoint) -> bool:
    """Whether the coder of `ckpt`, reading the module input, subtracts `b_dec` from
    it: as measured, else as sparsify loads its cfg.json (centred unless
    `transcode` is true)."""
    if ckpt.input_centred is not None:
        return ckpt.input_centred
    return json.loads((ckpt.path / CONFIG_FILE).read_text()).get("transcode") is not True


def saved_as_current(ckpt: Checkpoint) -> bool:
    """Whether the files of a coder reading the module input are already in
    sparsify's current transcoder form: `transcode` true and no input centring."""
    said = json.loads((ckpt.path / CONFIG_FILE).read_text()).get("transcode") is True
    return said and not centres_input(ckpt)


def check_tokens(tokenizer, dataset: str, split: str, hf_split: str | None = None) -> Tensor:
    """About `CHECK_TOKENS` tokens from the first documents of `dataset`'s `split`
    (`train`/`eval`; `hf_split` picks the rows of a HF dataset)."""
    from .data import load_corpus, tokenize

    corpus = load_corpus(dataset, split, hf_split=hf_split)
    # A few documents suffice; tokenizing a whole hub split would take hours.
    corpus = corpus.select(range(min(len(corpus), 256)))
    return tokenize(corpus, tokenizer, ctx_len=256)[:]["input_ids"]


def identify_run(
    run_dir: str | Path,
    found: list[Checkpoint],
    *,
    model: str | None,
    dataset: str | None,
    split: str,
    device: str,
) -> list[Checkpoint]:
    """`identify` for a caller that has no model loaded yet (autointerp): loads the
    run's model and a few rows of `dataset`'s `split` only when a coder needs it."""
    from .data import EMBEDDED, load_model

    manifest = Manifest.read(run_dir)
    plugin_run = manifest is not None
    if not any(_needs_check(c, plugin_run) for c in found):
        return found
    run = manifest.config if plugin_run else {}
    model_name, dataset = model or run.get("model", EMBEDDED), dataset or run.get("dataset", EMBEDDED)
    lm, tokenizer = load_model(model_name, device=device)
    local = dataset == EMBEDDED or Path(dataset).exists()
    ids = check_tokens(tokenizer, dataset, split if local else "eval", None if local else split)
    found, _ = identify(lm, found, ids, plugin_run=plugin_run)
    return found


IMPORT_RECORD = "pretrained.json"
"""Per imported coder (`<arch>/<hookpoint>`): its repository, its source folder, and
for a coder reading the module input the centring FVUs and verdict."""


def import_released(
    repos: Mapping[str, str],
    run_dir: str | Path,
    *,
    model: str,
    hookpoints: Sequence[str],
    dataset: str,
    eval_split: str,
    ctx_len: int,
    seed: int,
) -> dict[str, dict]:
    """Download (or find in the local HF cache) the `hookpoints` of each released
    repository in `repos` (architecture -> hub id, sparsify's layout) and make
    `run_dir` a run of them: coders in sparsify's current form are linked, the others
    written as a corrected copy. The centring checks run on `dataset`'s held-out
    rows; `eval_split`, `ctx_len` and `seed` are recorded as the run's settings for
    the stages after it. Returns the record also written to `IMPORT_RECORD`."""
    from .data import load_model

    lm, tokenizer = load_model(model, device="cpu")
    names = {n for n, _ in base_of(lm).named_modules() if n}
    found, sources = [], {}
    for arch, repo in repos.items():
        for ckpt in _download(repo, arch, hookpoints, names):
            found.append(ckpt)
            sources[ckpt.path] = repo
    ids = check_tokens(tokenizer, dataset, "eval", eval_split)
    found, measured = identify(lm, found, ids, plugin_run=False)
    measured = {m["checkpoint"]: m for m in measured}

    run_dir = Path(run_dir)
    record = {}
    for ckpt in found:
        arch = ckpt.architecture.name
        dest = coder_dir(run_dir, arch, ckpt.hookpoint)
        entry = {"repo": sources[ckpt.path], "source": str(ckpt.path)}
        if ckpt.architecture.reads == "input":
            m = measured[str(ckpt.path)]
            entry.update(fvu_uncentred=m["fvu_uncentred"],
                         fvu_input_centred=m["fvu_input_centred"],
                         legacy_input_centring=centres_input(ckpt))
        if ckpt.architecture.reads == "input" and not saved_as_current(ckpt):
            _write_corrected(ckpt.load(), dest)
        else:
            _link(ckpt.path, dest)
        record[f"{arch}/{ckpt.hookpoint}"] = entry

    Manifest(
        config={"model": model, "dataset": dataset, "eval_split": eval_split,
                "ctx_len": ctx_len, "seed": seed,
                "hookpoints": sorted({k.split("/", 1)[1] for k in record})},
        architectures={arch: {"status": COMPLETE, "source": repo} for arch, repo in repos.items()},
    ).write(run_dir)
    write_json(run_dir / IMPORT_RECORD, record)
    return record


def _download(
    repo: str, arch: str, hookpoints: Sequence[str], module_names: set[str]
) -> list[Checkpoint]:
    """The coders of `repo` at `hookpoints`, downloaded or from the local HF cache."""
    from huggingface_hub import snapshot_download

    from . import checkpoints

    patterns = [f"{p}/*" for p in hookpoints]
    patterns += [f"model.{p}" for p in patterns]
    snapshot = Path(snapshot_download(repo, allow_patterns=patterns))
    folders = sorted(f for f in snapshot.iterdir() if (f / CONFIG_FILE).is_file())
    chosen = {
        _hookpoint_name(f.name, module_names): f
        for f in folders
        if any(fnmatch.fnmatchcase(_hookpoint_name(f.name, module_names), p) for p in hookpoints)
    }
    if not chosen:
        raise UserError(f"{repo} has no checkpoint matching {list(hookpoints)}")
    # The repo names the architecture; an old-format cfg.json cannot.
    return [checkpoints.at(folder, hookpoint, arch) for hookpoint, folder in chosen.items()]


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
