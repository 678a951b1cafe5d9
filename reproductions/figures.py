"""What the figure scripts share: their own stage records, the table1 stages, one
row per (architecture, hookpoint) joining splice metrics with an autointerp score,
and atomic PNG/CSV writing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transcoders.atomic import atomic_path, write_json
from transcoders.autointerp.summary import interval
from transcoders.evaluation.evaluate import ALL

from .presets import Preset
from .stages import STAGES_FILE, Stages, autointerp_stage, evaluate_stage, read_records, train_stage


class FigureStages(Stages):
    """Stage records kept in `stages-<tag>.json` beside table1's `stages.json`.

    `Stages` keys its records by stage name, so one file holds one run's train,
    evaluate and autointerp; a sweep sharing it would overwrite table1's records (and
    each k another's) and so rerun them. Run folders are named by config, so a stage
    table1 already finished with the same key is taken as cached.
    """

    def __init__(self, out: Path, tag: str):
        super().__init__(out, f"stages-{tag}.json")
        self.table1 = read_records(out / STAGES_FILE)

    def run(self, name, key, output, work, done=lambda: True) -> bool:
        mine, theirs = self.records.get(name, {}), self.table1.get(name, {})
        if mine.get("key") != key and theirs.get("key") == key:
            self.records[name] = theirs
            write_json(self.file, self.records)
        return super().run(name, key, output, work, done)


def with_scorer(preset: Preset, scorer: str) -> Preset:
    """`preset`, scoring with `scorer` too (explanations and cache are reused)."""
    if scorer in preset.scorers:
        return preset
    return replace(preset, scorers=(*preset.scorers, scorer))


def run_stages(stages: Stages, preset: Preset) -> tuple[dict, dict]:
    """Train, evaluate and autointerp `preset` (each cached); (evaluation, summary)."""
    run_dir = train_stage(stages, preset)
    evaluation = evaluate_stage(stages, preset, run_dir)
    return evaluation, autointerp_stage(stages, preset, run_dir)


def rows(evaluation: dict, summary: dict, scorer: str, **labels) -> list[dict]:
    """One row per (architecture, hookpoint): `labels` (e.g. k=32), splice metrics,
    and `scorer`'s headline score for real and shuffled explanations with 95% CIs.
    A coder without scored latents gets empty score cells."""
    groups = {
        (g["architecture"], g["hookpoint"]): g
        for g in summary.get("groups", [])
        if g["scorer"] == scorer
    }
    out = []
    for r in evaluation["results"]:
        if r["hookpoint"] == ALL:
            continue
        g = groups.get((r["architecture"], r["hookpoint"]), {})
        metric = g.get("headline")
        row = {
            **labels,
            "architecture": r["architecture"],
            "hookpoint": r["hookpoint"],
            **{key: r.get(key) for key in ("fvu", "delta_ce", "kl", "l0")},
            "scorer": scorer,
            "metric": metric,
            "latents": g.get("latents", 0),
        }
        for kind, name in (("real", "score"), ("shuffled", "shuffled")):
            bounds = interval(g, metric, kind) if metric else None
            row[name], row[f"{name}_low"], row[f"{name}_high"] = bounds or (None, None, None)
        out.append(row)
    return out


NUMERIC = ("fvu", "delta_ce", "kl", "l0", "score", "score_low", "score_high",
           "shuffled", "shuffled_low", "shuffled_high")


def frame(rows: list[dict], architectures: tuple[str, ...], by: str) -> pd.DataFrame:
    """`rows` as a table sorted by architecture (in the preset's order, which fixes
    each one's colour) then `by`; missing numbers become NaN."""
    table = pd.DataFrame(rows)
    for column in NUMERIC:
        table[column] = pd.to_numeric(table[column])
    rank = {a: i for i, a in enumerate(architectures)}
    table["_rank"] = table["architecture"].map(lambda a: rank.get(a, len(rank)))
    table = table.sort_values(["_rank", "architecture", by], kind="stable")
    return table.drop(columns="_rank").reset_index(drop=True)


def new_figure(panels: int) -> tuple[Figure, list]:
    """A figure on an Agg canvas, without pyplot: no global state, no display needed."""
    fig = Figure(figsize=(5.2 * panels, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def write(fig: Figure, table: pd.DataFrame, png: Path, csv: Path) -> None:
    """Save the figure and its data, each atomically."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
