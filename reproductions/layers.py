"""Figure: interpretability per layer.

    python -m reproductions.layers                        # embedded preset, 4 layers
    python -m reproductions.layers --layers 2,6,10,14
    python -m reproductions.layers --preset pythia-160m --layers all

One training run covers the MLP of every chosen layer (`layers.{i}.mlp`), then
evaluation and autointerp score each hookpoint; all three stages are cached by
config under --work. Writes layers.png (the scorer's headline score with its 95%
CI against layer, one curve per architecture, the shuffled-explanation control
dashed) and layers.csv (one row per architecture and layer).
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

DEFAULT_POINTS = 4


def choose_layers(preset: Preset, text: str | None) -> list[int]:
    """`text` as layer indices: a comma-separated list, `all`, or None for
    DEFAULT_POINTS layers spread evenly over the preset model's depth."""
    if text is not None and text != "all":
        try:
            return sorted({int(i) for i in text.split(",") if i.strip()})
        except ValueError:
            raise UserError(f"--layers '{text}': give comma-separated integers or 'all'") from None
    depth = preset.model_config.get("num_hidden_layers")
    if depth is None or preset.model != presets.get(preset.name).model:
        raise UserError(
            f"The depth of '{preset.model}' is not known to the preset; name the layers, "
            "e.g. --layers 2,6,10"
        )
    if text == "all":
        return list(range(depth))
    # The middle of each of DEFAULT_POINTS equal slices of the stack.
    return sorted({int((i + 0.5) * depth / DEFAULT_POINTS) for i in range(DEFAULT_POINTS)})


def run(preset: Preset, layers: list[int], scorer: str, work: Path) -> pd.DataFrame:
    """Train every architecture on all `layers` in one run, evaluate and autointerp
    each hookpoint; one row per (architecture, layer)."""
    hookpoints = {f"layers.{i}.mlp": i for i in layers}
    preset = dataclasses.replace(
        figures.with_scorer(preset, scorer), hookpoints=tuple(hookpoints)
    )
    with runlock.hold(work):
        stages = figures.FigureStages(work, "layers-" + "-".join(map(str, layers)))
        evaluation, summary = figures.run_stages(stages, preset)
    table = [
        {"layer": hookpoints[row["hookpoint"]], **row}
        for row in figures.rows(evaluation, summary, scorer)
    ]
    return figures.frame(table, preset.architectures, by="layer")


def plot(table: pd.DataFrame, title: str) -> Figure:
    """Score (with CI) against layer, a curve per architecture; the shuffled control
    dashed in the same colour."""
    fig, (ax,) = figures.new_figure(1)
    metric = table["metric"].dropna().iloc[0] if table["metric"].notna().any() else "score"
    archs = table["architecture"].unique()
    layers = sorted(table["layer"].unique())
    # Nudge each architecture sideways so that overlapping error bars stay readable.
    step = min((b - a for a, b in zip(layers, layers[1:])), default=1)
    for i, (arch, g) in enumerate(table.groupby("architecture", sort=False)):
        x = g["layer"] + 0.06 * step * (i - (len(archs) - 1) / 2)
        yerr = [g["score"] - g["score_low"], g["score_high"] - g["score"]]
        line = ax.errorbar(x, g["score"], yerr=yerr, marker="o", capsize=3, label=arch)
        ax.plot(x, g["shuffled"], linestyle="--", alpha=0.6, color=line.lines[0].get_color())
    ax.plot([], [], linestyle="--", color="grey", label="shuffled explanations")
    ax.set_xlabel("layer (MLP)")
    ax.set_xticks(layers)
    ax.set_ylabel(f"{table['scorer'].iloc[0]} {metric} (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", "preset_name", default="embedded", show_default=True,
              help="Starting point; see `python -m reproductions.table1 --list-presets`.")
@click.option("--layers", "layers_text", default=None,
              help="Comma-separated layer indices, or 'all' "
                   f"[default: {DEFAULT_POINTS} layers spread over the model's depth].")
@click.option("--scorer", type=click.Choice(SCORERS), default="embedding", show_default=True,
              help="Whose headline score measures interpretability (added to the "
                   "preset's scorers if missing).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where layers.png and layers.csv go [default: runs/PRESET/results].")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoints, caches and stage records, shared with table1 "
                   "[default: runs/PRESET].")
@preset_options
def main(preset_name: str, layers_text: str | None, scorer: str, out: Path | None,
         work: Path | None, **options) -> None:
    """Plot each architecture's interpretability at the MLP of several layers.

    \b
    One training run covers every chosen layer; it, the evaluation and the
    autointerp are cached by config under --work, so a rerun finishes in seconds.
    Every preset value can be overridden, e.g. --train-tokens 50000; --hookpoints
    is replaced by --layers.
    """
    with one_line_errors():
        if options.get("hookpoints") is not None:
            raise UserError("--hookpoints is set by --layers here (layers.N.mlp)")
        preset = dataclasses.replace(presets.get(preset_name), **preset_overrides(options))
        layers = choose_layers(preset, layers_text)
        out = out or preset.results_dir()
        work = work or preset.work_dir()
        table = run(preset, layers, scorer, work)
        fig = plot(table, f"{preset.name}: {preset.model}, k={preset.k}")
        figures.write(fig, table, out / "layers.png", out / "layers.csv")
    columns = ["architecture", "layer", "score", "score_low", "score_high", "shuffled", "delta_ce"]
    click.echo("\n" + table[columns].to_string(index=False, float_format="{:.4f}".format))
    click.echo(f"Wrote {out}/layers.png and layers.csv")


if __name__ == "__main__":
    main()
