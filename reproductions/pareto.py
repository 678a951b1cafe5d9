"""Figure: reconstruction against interpretability over a sweep of k.

    python -m reproductions.pareto                        # embedded preset, k = 16, 32, 64
    python -m reproductions.pareto --preset smoke --ks 8,16
    python -m reproductions.pareto --scorer detection     # an LLM judge instead

For each k the table1 stages run with the preset's k replaced, each cached by its
config under --work, so the run at the preset's own k is table1's and a rerun is
instant. Writes pareto.png (ΔCE and FVU against the scorer's headline score with
its 95% CI, one curve per architecture) and pareto.csv (one row per architecture
and k).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pandas as pd
from matplotlib.figure import Figure

from transcoders import runlock
from transcoders.cli import one_line_errors
from transcoders.autointerp.config import SCORERS
from transcoders.errors import UserError

from . import figures, presets
from .presets import Preset, preset_options, preset_overrides

DEFAULT_KS = "16,32,64"


def sweep(preset: Preset, ks: list[int], scorer: str, work: Path) -> pd.DataFrame:
    """Run (or reuse) every stage for each k; one row per (architecture, k)."""
    if len(preset.hookpoints) != 1 or "*" in preset.hookpoints[0]:
        raise UserError(
            f"The Pareto sweep trains one hookpoint per k; the preset has "
            f"{', '.join(preset.hookpoints)}. Pick one, e.g. --hookpoints layers.6.mlp"
        )
    preset = figures.with_scorer(preset, scorer)
    table = []
    with runlock.hold(work):
        for k in ks:
            print(f"\n=== k = {k}")
            stages = figures.FigureStages(work, f"pareto-k{k}")
            evaluation, summary = figures.run_stages(stages, dataclasses.replace(preset, k=k))
            table += figures.rows(evaluation, summary, scorer, k=k)
    return figures.frame(table, preset.architectures, by="k")


def plot(table: pd.DataFrame, title: str) -> Figure:
    """ΔCE and FVU (y) against interpretability (x, with its CI), a curve per
    architecture through its k values."""
    fig, axes = figures.new_figure(2)
    metric = table["metric"].dropna().iloc[0] if table["metric"].notna().any() else "score"
    for ax, (column, label) in zip(axes, (("delta_ce", "ΔCE (nats)"), ("fvu", "FVU"))):
        for arch, g in table.groupby("architecture", sort=False):
            xerr = [g["score"] - g["score_low"], g["score_high"] - g["score"]]
            ax.errorbar(g["score"], g[column], xerr=xerr, marker="o", capsize=3, label=arch)
            for x, y, k in zip(g["score"], g[column], g["k"]):
                ax.annotate(f"k={k}", (x, y), xytext=(4, 4), textcoords="offset points",
                            fontsize=7)
        ax.set_xlabel(f"{table['scorer'].iloc[0]} {metric} (95% CI)")
        ax.set_ylabel(f"{label}, lower is better")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    return fig


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of integers",
                                 param_hint="--ks") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter(
            f"'{text}': give positive k values, e.g. 16,32,64", param_hint="--ks"
        )
    return ks


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", "preset_name", default="embedded", show_default=True,
              help="Starting point; see `python -m reproductions.table1 --list-presets`.")
@click.option("--ks", "ks_text", default=DEFAULT_KS, show_default=True,
              help="Comma-separated k values (active latents per token) to sweep.")
@click.option("--scorer", type=click.Choice(SCORERS), default="embedding", show_default=True,
              help="Whose headline score measures interpretability (added to the "
                   "preset's scorers if missing).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where pareto.png and pareto.csv go [default: runs/PRESET/results].")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints, caches and stage records, shared with table1 "
                   "[default: runs/PRESET].")
@preset_options
def main(preset_name: str, ks_text: str, scorer: str, out: Path | None, work: Path | None,
         **options) -> None:
    """Plot ΔCE and FVU against interpretability for each architecture over a
    sweep of k (the paper's Pareto comparison).

    \b
    Each k runs table1's stages (train, evaluate, autointerp), cached by config
    under --work: the preset's own k reuses table1's run, and a rerun finishes in
    seconds. Every preset value can be overridden, e.g. --train-tokens 50000;
    --k is replaced by --ks.
    """
    ks = _ks(ks_text)
    with one_line_errors():
        if options.get("k") is not None:
            raise UserError("--k is set per point of the sweep; use --ks instead")
        preset = dataclasses.replace(presets.get(preset_name), **preset_overrides(options))
        out = out or preset.results_dir()
        work = work or preset.work_dir()
        table = sweep(preset, ks, scorer, work)
        fig = plot(table, f"{preset.name}: {preset.model} {preset.hookpoints[0]}")
        figures.write(fig, table, out / "pareto.png", out / "pareto.csv")
    columns = ["architecture", "k", "fvu", "delta_ce", "score", "score_low", "score_high"]
    click.echo("\n" + table[columns].to_string(index=False, float_format="{:.4f}".format))
    click.echo(f"Wrote {out}/pareto.png and pareto.csv")


if __name__ == "__main__":
    main()
