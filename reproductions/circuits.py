"""Attribution graphs on the embedded model, with transcoders trained here.

    python -m reproductions.circuits            # or: make circuits
    circuit-tracer start-server --graph_file_dir reproductions/results/embedded/circuits/graphs

Trains the `embedded-all-layers` preset (transcoders and skip transcoders on all 30
MLPs of SmolLM2-135M-Instruct, one recorded pass), exports each architecture to
circuit-tracer and checks the export in circuit-tracer itself, then runs
circuit-tracer's attribution on Shakespeare prompts, on CPU and offline, in the
second environment (`make circuits-env`; `circuits_graphs.py` is that half).

Writes to --out: `graphs/` (the files circuit-tracer's frontend serves),
`circuits.png` (each architecture's pruned graph for the first prompt),
`circuits.md` and `circuits.json` (circuit-tracer's replacement and completeness
scores, and how often the replacement model, every MLP replaced by its transcoder,
predicts the real model's top token).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import click
from safetensors.torch import save_file
from transformers import AutoTokenizer

from transcoders import runlock
from transcoders.atomic import write_json, write_text
from transcoders.cli import one_line_errors
from transcoders.data import load_corpus, tokenize
from transcoders.data.model import embedded_model_dir
from transcoders.export import export, verify
from transcoders.export.api import circuits_python
from transcoders.formatting import markdown_table
from transcoders.run import Manifest

from . import presets
from .circuits_figure import draw
from .presets import Preset
from .stages import Stages, config_key, train_stage

PROMPTS = {
    "hamlet": "To be, or not to be, that is the",
    "sonnet": "Shall I compare thee to a summer's",
    "romeo": "O Romeo, Romeo, wherefore art thou",
}
ATTRIBUTION = {
    "max_n_logits": 5,
    "batch_size": 128,
    "max_feature_nodes": 2048,
    "node_threshold": 0.6,
    "edge_threshold": 0.9,
}
"""circuit-tracer's settings. Its defaults (batch 512, no cap on features) are sized
for a GPU. A prompt of 11 tokens has 11 × 30 × k = 5280 active features; attributing
the 2048 most influential keeps one graph under a couple of minutes on 2 CPU cores, and
the pruning thresholds keep the committed graph files small."""

HELDOUT_TOKENS = 512


def transformers4_model_dir(source: Path, dest: Path) -> Path:
    """A copy of a transformers-5 model folder that transformers 4 can load.

    transformers 5 saves `tokenizer_class: TokenizersBackend`, a class transformers 4
    (in .venv-circuits, for circuit-tracer 0.5.0) does not have; the tokenizer.json
    itself is the same format. This links the model files and writes a
    tokenizer_config.json naming `PreTrainedTokenizerFast`. It can go once
    circuit-tracer supports transformers 5.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        link = dest / file.name
        if file.name != "tokenizer_config.json" and not link.exists():
            os.symlink(file.resolve(), link)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_json(dest / "tokenizer_config.json", config)
    return dest


def run(preset: Preset, out: Path, work: Path, prompts: dict[str, str] = PROMPTS) -> dict:
    """Train (cached), export, verify, attribute; returns what circuits.json holds."""
    start = time.perf_counter()
    with runlock.hold(work):
        return _run(preset, out, work, prompts, start)


def _run(preset: Preset, out: Path, work: Path, prompts: dict[str, str], start: float) -> dict:
    stages = Stages(work)
    run_dir = train_stage(stages, preset)
    manifest = Manifest.read(run_dir)

    export_dir = work / f"circuit-tracer-{run_dir.name}"
    if not (export_dir / "export.json").is_file():
        export(run_dir, "circuit-tracer", export_dir)
    source = embedded_model_dir() if preset.model == "embedded" else Path(preset.model)
    rows = tokenize(load_corpus(preset.dataset, "eval"), AutoTokenizer.from_pretrained(source),
                    ctx_len=64, max_tokens=HELDOUT_TOKENS, seed=preset.seed)
    heldout = rows[:]["input_ids"]
    errors = verify(export_dir, heldout)

    spec = {
        "model": str(transformers4_model_dir(source, work / "model-transformers4")),
        "sets": {arch: str(export_dir / arch) for arch in preset.architectures},
        "prompts": prompts,
        "heldout": str(work / "heldout.safetensors"),
        "out": str(work / f"graphs-{config_key([run_dir.name, prompts, ATTRIBUTION])}"),
        **ATTRIBUTION,
    }
    save_file({"input_ids": heldout.contiguous()}, spec["heldout"])
    scores_file = Path(spec["out"]) / "scores.json"

    def attribute() -> None:
        write_json(work / "circuits-spec.json", spec)
        repo = Path(__file__).resolve().parents[1]
        env = {**os.environ, "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(repo / "plugin"), str(repo)])}
        subprocess.run([str(circuits_python()), "-m", "reproductions.circuits_graphs",
                        str(work / "circuits-spec.json")], env=env, check=True)

    stages.run("attribution", config_key(spec), scores_file, attribute)
    scores = json.loads(scores_file.read_text())

    graphs = out / "graphs"
    graphs.mkdir(parents=True, exist_ok=True)
    for file in Path(spec["out"], "graphs").iterdir():
        write_text(graphs / file.name, file.read_text())
    first = next(iter(prompts))
    draw({arch: graphs / f"{arch}-{first}.json" for arch in preset.architectures},
         scores, out / "circuits.png")

    fvu = {a: manifest.architectures[a]["fvu"] for a in preset.architectures}
    results = {
        "preset": preset.to_dict(),
        "run_dir": str(run_dir),
        "fvu": fvu,
        "export_max_relative_error": max(max(e.values()) for e in errors.values()),
        "attribution": ATTRIBUTION,
        "fidelity": fidelity(scores, fvu),
        "per_prompt": per_prompt(scores),
        "scores": scores,
        "versions": manifest.versions,
        "hardware": manifest.hardware,
        "stage_wall_time_s": stages.wall_times(),
        "total_wall_time_s_this_invocation": time.perf_counter() - start,
    }
    write_json(out / "circuits.json", results)
    write_text(out / "circuits.md", report(results))
    return results


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def fidelity(scores: dict, fvu: dict) -> list[dict]:
    """One row per architecture: the means over prompts (and over MLPs for FVU)."""
    rows = []
    for arch, s in scores.items():
        prompts = list(s["prompts"].values())
        rows.append({
            "architecture": arch,
            "mean FVU (all MLPs)": _mean(list(fvu[arch].values())),
            "replacement score": _mean([p["replacement_score"] for p in prompts]),
            "completeness score": _mean([p["completeness_score"] for p in prompts]),
            "top-token agreement (held-out)": s["heldout_top_token_agreement"],
            "prompts' top token kept": f"{sum(p['top_token_agrees'] for p in prompts)}/{len(prompts)}",
        })
    return rows


def per_prompt(scores: dict) -> list[dict]:
    """One row per architecture and prompt."""
    return [
        {"architecture": arch, "prompt": p["prompt"], "model's next token": repr(p["model_top_token"]),
         "replacement's": repr(p["replacement_top_token"]), "replacement score": p["replacement_score"],
         "completeness score": p["completeness_score"], "pruned nodes": p["pruned_nodes"],
         "attribution s": p["attribution_s"]}
        for arch, s in scores.items() for p in s["prompts"].values()
    ]


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def _markdown(rows: list[dict]) -> str:
    return markdown_table(list(rows[0]), [list(row.values()) for row in rows], _cell)


def report(results: dict) -> str:
    """circuits.md: both tables."""
    return (
        "## Attribution graphs: transcoders vs skip transcoders\n\n"
        f"{results['preset']['description']} circuit-tracer reproduces every exported "
        f"transcoder to {results['export_max_relative_error']:.1e} relative error.\n\n"
        + _markdown(results["fidelity"]) + "\n" + _markdown(results["per_prompt"])
    )


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/circuits/results"), show_default=True,
              help="Where the graphs, picture and scores go (the committed copy: "
                   "reproductions/results/embedded/circuits).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/circuits"), show_default=True,
              help="Cache of the training run, export and attribution.")
def main(out: Path, work: Path) -> None:
    """Attribution graphs with transcoders and skip transcoders on every MLP."""
    with one_line_errors():
        results = run(presets.get("embedded-all-layers"), out, work)
    click.echo(report(results))
    click.echo(f"Wrote {out}; browse with: circuit-tracer start-server --graph_file_dir {out / 'graphs'}")


if __name__ == "__main__":
    main()
