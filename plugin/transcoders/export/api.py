"""`export` writes a run's coders in a target library's format; `verify` checks, in
the target library itself, that the export computes what the plugin's coders do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..activations import module_io
from ..atomic import write_json, write_text
from ..checkpoints import Checkpoint
from ..errors import UserError
from . import to_circuit_tracer, to_saelens
from .source import ExportError, Source, read_source

FORMATS = ("circuit-tracer", "saelens")
TARGET_VERSIONS = {"circuit-tracer": "0.5.0", "saelens": to_saelens.SAELENS_VERSION}
EXPORT_FILE = "export.json"
TOLERANCE = 1e-4
"""Largest relative error (‖target − plugin‖ / ‖plugin‖) `verify` accepts."""

CIRCUITS_PYTHON_ENV = "TRANSCODERS_CIRCUITS_PYTHON"


class CircuitsEnvMissing(UserError, FileNotFoundError):
    """The second environment, where circuit-tracer and SAELens live, is not built."""


def _representable(to: str, ckpt: Checkpoint) -> str | None:
    module = to_circuit_tracer if to == "circuit-tracer" else to_saelens
    return module.representable(ckpt)


def _choose(source: Source, to: str, architectures: list[str] | None) -> tuple[dict, dict]:
    """The checkpoints to export per architecture, and why the others are left out."""
    groups = source.architectures()
    unknown = set(architectures or []) - set(groups)
    if unknown:
        raise ExportError(
            f"--architecture {', '.join(sorted(unknown))}: not in {source.run} "
            f"(it has {', '.join(groups)})"
        )
    chosen, skipped = {}, {}
    for arch, ckpts in groups.items():
        if architectures and arch not in architectures:
            continue
        reasons = {c.hookpoint: r for c in ckpts if (r := _representable(to, c))}
        if not reasons:
            chosen[arch] = ckpts
        elif architectures:
            hookpoint, reason = next(iter(reasons.items()))
            raise ExportError(f"Cannot export {arch}/{hookpoint} to {to} exactly: {reason}")
        else:
            skipped[arch] = next(iter(reasons.values()))
    if not chosen:
        why = "; ".join(f"{a}: {r}" for a, r in skipped.items())
        raise ExportError(f"Nothing in {source.run} can be exported to {to} exactly ({why})")
    return chosen, skipped


def export(
    run: str | Path,
    to: str,
    out: str | Path,
    *,
    architectures: list[str] | None = None,
    model: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the coders of `run` (a plugin run, a plain sparsify folder or a
    `--pretrained` import) in `to`'s format under `out`; returns `out/export.json`.

    Layout: `out/<architecture>/` holds a circuit-tracer transcoder set
    (`config.yaml`, `layer_{i}.safetensors`), or one SAELens folder per hookpoint
    (`<hookpoint>/cfg.json`, `sae_weights.safetensors`). By default every
    architecture the target represents exactly is exported and the others are
    listed under `skipped`; naming one it cannot represent is an error.
    """
    if to not in FORMATS:
        raise ExportError(f"--to must be one of {', '.join(FORMATS)}, not '{to}'")
    source = read_source(run, model)
    chosen, skipped = _choose(source, to, architectures)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty; choose another OUT or pass --overwrite")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        exported = {}
        for arch, ckpts in chosen.items():
            if to == "circuit-tracer":
                exported[arch] = to_circuit_tracer.write(
                    ckpts, staging / arch, source.model, scan=f"{source.run.name}/{arch}"
                )
                exported[arch]["coders"] = {
                    key: f"{arch}/{file}" for key, file in exported[arch]["coders"].items()
                }
            else:
                exported[arch] = {"coders": {}}
                for ckpt in ckpts:
                    key = f"{arch}/{ckpt.hookpoint}"
                    to_saelens.write(ckpt, staging / key, source.model, source.run)
                    exported[arch]["coders"][key] = key
        record = {
            "format": 1,
            "target": to,
            "target_version": TARGET_VERSIONS[to],
            "source": str(source.run.resolve()),
            "model": source.model,
            "hookpoints": sorted({c.hookpoint for cs in chosen.values() for c in cs}),
            "exported": exported,
            "skipped": skipped,
            "transcoders_version": _version("transcoders"),
        }
        write_json(staging / EXPORT_FILE, record)
        write_text(staging / "README.md", _readme(record))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _readme(record: dict) -> str:
    lines = [
        f"# {record['target']} export",
        "",
        f"Written by `transcoders export` {record['transcoders_version']} for "
        f"{record['target']} {record['target_version']}.",
        "",
        f"- Source run: `{record['source']}`",
        f"- Model: `{record['model']}`",
        f"- Hookpoints (sparsify module names): {', '.join(record['hookpoints'])}",
        "",
    ]
    for arch, info in record["exported"].items():
        lines.append(f"## {arch}\n")
        lines += [f"- `{path}` ← `{key}`" for key, path in info["coders"].items()]
        lines.append("")
        if record["target"] == "circuit-tracer":
            lines += [
                f"Activation: ReLU, then the k={info['k']} largest (sparsify's). "
                "circuit-tracer 0.5.0's own file loader would build a plain ReLU, so "
                "load with `transcoders.export.target.load_transcoder_set("
                f"'{arch}')` in an environment with circuit-tracer (`make "
                "circuits-env`), which uses circuit-tracer's loader and sets the "
                "activation to ReLU followed by circuit-tracer's TopK.",
                "",
            ]
            if not info["complete_set"]:
                lines += [
                    f"Layers {info['layers']} only: circuit-tracer's TranscoderSet needs "
                    "every layer from 0 up, so load single layers with "
                    "`transcoders.export.target.load_layer`.",
                    "",
                ]
        else:
            lines += [
                "Load with `sae_lens.SAE.load_from_disk(<folder>)`: a `topk` SAE, "
                "`apply_b_dec_to_input=True`, the same function as sparsify's.",
                "",
            ]
    for arch, reason in record["skipped"].items():
        lines.append(f"Not exported: {arch} ({reason}).")
    return "\n".join(lines).rstrip() + "\n"


def circuits_python() -> Path:
    """The interpreter of the environment circuit-tracer and SAELens live in."""
    chosen = os.environ.get(CIRCUITS_PYTHON_ENV)
    repo = Path(__file__).resolve().parents[3]
    python = Path(chosen) if chosen else repo / ".venv-circuits" / "bin" / "python"
    if not python.is_file():
        named = f"{CIRCUITS_PYTHON_ENV}={chosen}" if chosen else str(python)
        raise CircuitsEnvMissing(
            f"{named} is missing: circuit-tracer and SAELens need their own "
            f"environment; build it with `make circuits-env` (or point "
            f"{CIRCUITS_PYTHON_ENV} at a Python that has them)"
        )
    return python


def run_target(target: str, export_dir: Path, inputs: dict[str, torch.Tensor]) -> dict:
    """Run `target.py` in the circuits environment on `inputs`; returns its outputs."""
    python = circuits_python()
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.clone() for k, v in inputs.items()}, f"{tmp}/inputs.safetensors")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
               "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [str(python), "-m", "transcoders.export.target", target, str(export_dir),
             f"{tmp}/inputs.safetensors", f"{tmp}/outputs.safetensors"],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{target} failed on {export_dir}:\n{done.stderr[-3000:]}")
        return load_file(f"{tmp}/outputs.safetensors")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ over the whole tensor."""
    return float((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30))


@torch.no_grad()
def verify(export_dir: str | Path, input_ids: torch.Tensor | None = None) -> dict:
    """Run the export in its target library on real activations of the source
    model and compare with the plugin's coders.

    Returns, per `architecture/hookpoint`, the relative error of the output and of
    the latent activations (and of circuit-tracer's sparse path, used during
    attribution). `input_ids` default to 4 × 64 held-out tokens of the embedded corpus.
    """
    from ..data import load_corpus, load_model, tokenize

    circuits_python()  # fail before loading the model if the target can't run
    export_dir = Path(export_dir)
    record = json.loads((export_dir / EXPORT_FILE).read_text())
    source = read_source(record["source"], record["model"])
    if source.model is None:
        raise ExportError(f"{export_dir}: the source model is unknown; re-export with --model")
    model, tokenizer = load_model(source.model)
    if input_ids is None:
        rows = tokenize(load_corpus("embedded", "eval"), tokenizer, ctx_len=64, max_tokens=256)
        input_ids = rows[:]["input_ids"]
    by_key = {f"{c.architecture.name}/{c.hookpoint}": c for c in source.checkpoints}
    keys = [k for info in record["exported"].values() for k in info["coders"]]
    acts = module_io(model, sorted({by_key[k].hookpoint for k in keys}), input_ids)

    inputs, expected = {}, {}
    for key in keys:
        ckpt = by_key[key]
        x = acts[ckpt.hookpoint][ckpt.architecture.reads].flatten(0, 1)
        coder = ckpt.load("cpu")
        if x.shape[-1] != coder.d_in:
            raise ExportError(
                f"{ckpt.path} reads width {coder.d_in}, but '{source.model}' gives "
                f"{ckpt.hookpoint} width {x.shape[-1]}; pass the model it was trained "
                "on with --model"
            )
        top = coder.encode(x)
        latents = torch.zeros(x.shape[0], coder.num_latents).scatter_(-1, top.top_indices, top.top_acts)
        inputs[key] = x
        expected[key] = {"output": coder(x).sae_out, "latents": latents}

    got = run_target(record["target"], export_dir, inputs)
    return {
        key: {
            name: relative_error(got[f"{key}/{name}"], expected[key][name.removesuffix("_sparse")])
            for name in ("output", "latents", "output_sparse")
            if f"{key}/{name}" in got
        }
        for key in keys
    }
