"""Table 1: SAE vs transcoder vs skip transcoder, from training to autointerp.

    python -m reproductions.table1                      # embedded preset, offline CPU
    python -m reproductions.table1 --preset smoke       # a minute, for tests
    python -m reproductions.table1 --preset pythia-160m --explainer vllm:...  # GPU
    python -m reproductions.table1 --list-presets
    python -m reproductions.table1 --preset llama-3.2-1b --check   # resolve, size, exit
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import click
import pandas as pd

from transcoders import runlock
from transcoders.cli import one_line_errors
from transcoders.atomic import atomic_path, write_json, write_text
from transcoders.autointerp.summary import control_warnings, interval as summary_interval
from transcoders.data.corpus import is_hf
from transcoders.evaluation import bootstrap
from transcoders.formatting import interval, markdown_table
from transcoders.run import Manifest

from . import presets
from .presets import OVERRIDABLE, Preset, preset_options, preset_overrides
from .stages import Stages, autointerp_stage, browse_stage, evaluate_stage, train_stage

EVAL_COLUMNS = {
    "fvu": "FVU",
    "delta_ce": "ΔCE",
    "kl": "KL",
    "loss_recovered": "loss recovered",
    "l0": "L0",
    "dead_fraction": "dead %",
}
PAIRS = (("transcoder", "sae"), ("skip-transcoder", "transcoder"), ("skip-transcoder", "sae"))


def _splice_ci(diff: float, low: float, high: float) -> str:
    """A paired splice-metric difference; no interval from a single document."""
    if math.isnan(low):
        return f"{diff:.4f} [n/a: one document]"
    return interval(diff, low, high, digits=4)


def splice_ci_label(evaluation: dict) -> str:
    """What the FVU, ΔCE and KL intervals of `comparisons` resample."""
    return (
        "FVU, ΔCE and KL: difference [95% CI], " + bootstrap.describe(evaluation)
        + " (every architecture evaluated on the same sequences; whole documents "
        "resampled)."
    )


def _group_ci(group: dict, kind: str) -> str:
    """A scorer's headline metric (real, shuffled or their difference) as `mean [low, high]`."""
    if not group:
        return "n/a"
    return interval(*summary_interval(group, group["headline"], kind) or (None, None, None))


def _dead_label(tokens: int, window: str) -> str:
    return f"dead % ({tokens:,} {window} tokens)"


def build_table(model: str, evaluation: dict, summary: dict | None) -> pd.DataFrame:
    """One row per (hookpoint, architecture): splice metrics, dead latents over the
    evaluation tokens and over the (larger) autointerp cache, the fraction of live
    and of all latents eligible for autointerp, then each scorer's headline score, its
    shuffled-explanation control and their difference paired by latent, with 95% CIs,
    and the Spearman correlation of firing frequency with the score."""
    groups = {
        (g["architecture"], g["hookpoint"], g["scorer"]): g
        for g in (summary or {}).get("groups", [])
    }
    counts = {(c["architecture"], c["hookpoint"]): c for c in (summary or {}).get("latent_counts", [])}
    scorers = sorted({k[2] for k in groups})
    rows = []
    for result in evaluation["results"]:
        if result["hookpoint"] == "all":
            continue
        arch, hp = result["architecture"], result["hookpoint"]
        row = {"model": model, "hookpoint": hp, "architecture": arch}
        for key, label in EVAL_COLUMNS.items():
            value = result.get(key)
            if key == "dead_fraction":
                label = _dead_label(result.get("tokens", evaluation.get("tokens", 0)), "evaluation")
                value = 100 * value if value is not None else None
            row[label] = value
        c = counts.get((arch, hp))
        if counts:
            tokens = max(x["cache_tokens"] for x in counts.values())
            row[_dead_label(tokens, "autointerp")] = 100 * c["dead_fraction"] if c else None
            row["eligible % of live"] = (
                100 * c["eligible_fraction"] if c and c["eligible_fraction"] is not None else None
            )
            row["eligible % of all"] = 100 * c["eligible_fraction_of_all"] if c else None
        for scorer in scorers:
            g = groups.get((arch, hp, scorer), {})
            row[scorer] = _group_ci(g, "real")
            row[f"{scorer} shuffled"] = _group_ci(g, "shuffled")
            row[f"{scorer} real − shuffled (paired by latent)"] = _group_ci(g, "real_minus_shuffled")
            row[f"{scorer} Spearman(frequency, score)"] = g.get("spearman_frequency")
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons(evaluation: dict, summary: dict | None) -> pd.DataFrame:
    """transcoder − SAE and skip − transcoder: splice-metric differences with CIs
    from a paired bootstrap over held-out sequences clustered by document
    (`splice_ci_label`); autointerp headline differences, raw and frequency-matched,
    each with a CI from an unpaired bootstrap over latents (the architectures' latents
    are different ones)."""
    by_arch = {
        (r["architecture"], r["hookpoint"]): r
        for r in evaluation["results"]
        if r["hookpoint"] != "all"
    }
    found = {
        (c["a"], c["b"], c["hookpoint"], c["scorer"]): c
        for c in (summary or {}).get("comparisons", [])
    }
    rows = []
    for a, b in PAIRS:
        for hp in sorted({hp for (arch, hp) in by_arch if arch == a}):
            if (b, hp) not in by_arch:
                continue
            row = {"comparison": f"{a} − {b}", "hookpoint": hp}
            for key in bootstrap.METRICS:
                row[EVAL_COLUMNS[key]] = _splice_ci(
                    *bootstrap.paired_difference(evaluation, a, b, hp, key)
                )
            for (x, y, chp, scorer), c in sorted(found.items()):
                if chp != hp or {x, y} != {a, b}:
                    continue
                sign = 1 if x == a else -1
                name = f"{scorer} {c['metric']}"
                row[f"{name} (unpaired)"] = _signed_ci(c, "a_minus_b", sign)
                matched = _signed_ci(c, "matched_a_minus_b", sign)
                if summary_interval(c, c["metric"], "matched_a_minus_b") is not None:
                    matched += f" ({c['matched_bins']} bins, {c['matched_coverage']:.0%} of latents)"
                row[f"{name} frequency-matched (unpaired)"] = matched
            rows.append(row)
    return pd.DataFrame(rows)


def _signed_ci(c: dict, kind: str, sign: int) -> str:
    """A comparison's `kind` interval, as a − b for sign 1 and b − a for sign -1."""
    d = summary_interval(c, c["metric"], kind)
    if d is None:
        return "n/a"
    low, high = sign * d.low, sign * d.high
    return interval(sign * d.value, min(low, high), max(low, high))


COMPARISON_NOTE = (
    "Autointerp differences are unpaired: each architecture has its own latents, so "
    "their intervals come from an unpaired bootstrap over latents. Frequency-matched: "
    "latents binned by firing frequency on the autointerp cache (quintiles of both "
    "architectures' pooled frequencies), the architectures compared within each bin "
    "and the bin differences averaged with the pooled bin counts as weights; bins "
    "where either has fewer than 2 latents are left out (the share of latents kept is "
    "given). Real − shuffled in the table above is paired by latent (same latents).\n"
)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    return markdown_table(list(df.columns), [list(row) for _, row in df.iterrows()], _cell)


def run(preset: Preset, out: Path, work: Path, *, pretrained: bool = False) -> dict:
    """All stages for `preset`; writes table1.md, table1.csv and results.json."""
    start = time.perf_counter()
    if is_hf(preset.dataset):
        # Budgets a hub split cannot hold fail now, not after the model is loaded
        # (local text is counted exactly where it is tokenized, in seconds).
        from .check import budgets, load_tokenizer

        budgets(preset, load_tokenizer(preset), pretrained)
    with runlock.hold(work):
        stages = Stages(work)
        if pretrained:
            from .pretrained import pretrained_stage

            run_dir = pretrained_stage(stages, preset)
        else:
            run_dir = train_stage(stages, preset)
        evaluation = evaluate_stage(stages, preset, run_dir)
        summary = autointerp_stage(stages, preset, run_dir) if preset.latents > 0 else None
        if summary is not None:
            browse_stage(stages, preset, run_dir, out / "browser")

    table = build_table(preset.model, evaluation, summary)
    pairs = comparisons(evaluation, summary)
    warnings = control_warnings(summary)
    manifest = Manifest.read(run_dir) or Manifest()
    results = {
        "preset": preset.to_dict(),
        "run_dir": str(run_dir),
        "versions": manifest.versions,
        "hardware": manifest.hardware,
        "stage_wall_time_s": stages.wall_times(),
        "total_wall_time_s_this_invocation": time.perf_counter() - start,
        "table": table.to_dict(orient="records"),
        "comparisons": pairs.to_dict(orient="records"),
        "comparisons_splice_ci": splice_ci_label(evaluation),
        "evaluation": evaluation,
        "autointerp": summary,
        "control_warnings": warnings,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "table1.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_text(
        out / "table1.md",
        f"## Table 1: {preset.name} preset\n\n{preset.description}\n\n"
        + to_markdown(table)
        + "".join(f"\n**Control warning**: {w}\n" for w in warnings)
        + "\n### Architecture comparisons\n\n"
        + to_markdown(pairs)
        + f"\n{splice_ci_label(evaluation)}\n"
        + ("\n" + COMPARISON_NOTE if summary else "")
        + "\nStage wall times (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.wall_times().items())
        + "\n",
    )
    write_json(out / "results.json", results)
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", "preset_name", default="embedded", show_default=True,
              help="Starting point; see --list-presets.")
@click.option("--list-presets", is_flag=True, help="Show every preset's values and exit.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where table1.md, table1.csv and results.json go "
                   "[default: runs/PRESET/results].")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints, caches and stage records [default: runs/PRESET].")
@click.option("--pretrained", is_flag=True,
              help="Evaluate EleutherAI's released checkpoints instead of training "
                   "(llama-3.2-1b preset).")
@click.option("--check", "check_only", is_flag=True,
              help="Resolve model, dataset splits, token budgets, hookpoints, explainer "
                   "and judge, estimate disk and GPU memory, then exit (0: it can run).")
@preset_options
def main(preset_name: str, list_presets: bool, out: Path | None, work: Path | None,
         pretrained: bool, check_only: bool, **options) -> None:
    """Reproduce Table 1: train (or load), evaluate and autointerp SAE, transcoder
    and skip transcoder, then print the comparison.

    \b
    Each stage is cached by its config under --work: rerunning finishes in seconds,
    and after a crash or a changed later-stage flag only what changed runs again.
    Every preset value can be overridden, e.g. --train-tokens 50000 --k 64.
    """
    if list_presets:
        for p in presets.PRESETS.values():
            click.echo(f"{p.name}: {p.description}")
            for f in OVERRIDABLE:
                click.echo(f"    {f.name} = {getattr(p, f.name)!r}")
        return
    with one_line_errors():
        preset = presets.get(preset_name)
        preset = dataclasses.replace(preset, **preset_overrides(options))
        out = out or preset.results_dir()
        work = work or preset.work_dir()
        if check_only:
            from .check import check

            for line in check(preset, work, pretrained=pretrained):
                click.echo(line)
            click.echo(f"Preset '{preset.name}' can run.")
            return
        results = run(preset, out, work, pretrained=pretrained)
    click.echo("\n" + (out / "table1.md").read_text())
    click.echo(f"Wrote {out}/table1.md, table1.csv, results.json "
               f"({results['total_wall_time_s_this_invocation']:.0f} s this run)")


if __name__ == "__main__":
    main()
