"""The figure scripts: table assembly and plotting on hand-made results, and both
commands end to end on a shrunken smoke preset."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from reproductions import figures, layers, pareto
from reproductions.presets import PRESETS
from transcoders.errors import UserError

ARCHS = ("sae", "transcoder", "skip-transcoder")


def _evaluation(hookpoints, offset=0.0):
    results = []
    for i, arch in enumerate(sorted(ARCHS)):
        for j, hp in enumerate(hookpoints):
            results.append({
                "architecture": arch, "hookpoint": hp, "fvu": 0.1 * (i + 1) + offset,
                "delta_ce": 0.5 + 0.1 * i + 0.01 * j + offset, "kl": 0.2, "l0": 8.0,
            })
        results.append({"architecture": arch, "hookpoint": "all", "fvu": 9.0, "delta_ce": 9.0})
    return {"results": results}


def _summary(hookpoints, skip=()):
    groups = []
    for i, arch in enumerate(ARCHS):
        for j, hp in enumerate(hookpoints):
            for scorer, headline in (("embedding", "auroc"), ("detection", "balanced_accuracy")):
                if (arch, hp) in skip:
                    continue
                value = 0.6 + 0.05 * i + 0.01 * j + (0.2 if scorer == "detection" else 0)
                groups.append({
                    "architecture": arch, "hookpoint": hp, "scorer": scorer,
                    "latents": 5, "headline": headline,
                    headline: value, f"{headline}_low": value - 0.1,
                    f"{headline}_high": value + 0.1,
                    f"shuffled_{headline}": 0.5, f"shuffled_{headline}_low": 0.45,
                    f"shuffled_{headline}_high": 0.55,
                })
    return {"groups": groups, "comparisons": []}


def test_rows_join_splice_metrics_with_the_chosen_scorer():
    hps = ["layers.2.mlp", "layers.6.mlp"]
    rows = figures.rows(_evaluation(hps), _summary(hps), "embedding", k=16)
    assert len(rows) == len(ARCHS) * len(hps)  # the splice-all rows are left out
    row = next(r for r in rows if r["architecture"] == "transcoder" and r["hookpoint"] == hps[1])
    assert row["k"] == 16 and row["metric"] == "auroc"
    assert row["score"] == pytest.approx(0.66) and row["score_low"] == pytest.approx(0.56)
    assert row["shuffled"] == 0.5 and row["fvu"] == pytest.approx(0.3)
    detection = figures.rows(_evaluation(hps), _summary(hps), "detection")
    assert {r["metric"] for r in detection} == {"balanced_accuracy"}


def test_a_coder_without_scores_gets_empty_cells_not_zeros():
    hps = ["layers.6.mlp"]
    rows = figures.rows(_evaluation(hps), _summary(hps, skip={("sae", hps[0])}), "embedding")
    table = figures.frame(rows, ARCHS, by="hookpoint")
    sae = table[table["architecture"] == "sae"].iloc[0]
    assert math.isnan(sae["score"]) and sae["latents"] == 0
    assert not table[table["architecture"] != "sae"]["score"].isna().any()


def test_figure_stages_keep_their_own_records_and_reuse_table1s(tmp_path):
    from reproductions.stages import Stages

    ran = []

    def work(tag, output):
        return lambda: (ran.append(tag), output.write_text(tag))

    train_out, eval_out = tmp_path / "train.txt", tmp_path / "evaluate.txt"
    Stages(tmp_path).run("train", "abc", train_out, work("table1", train_out))
    table1 = (tmp_path / "stages.json").read_text()

    sweep = figures.FigureStages(tmp_path, "pareto-k8")
    assert sweep.run("train", "abc", train_out, work("again", train_out))  # cached
    sweep.run("evaluate", "def", eval_out, work("evaluate", eval_out))
    assert ran == ["table1", "evaluate"]
    assert (tmp_path / "stages.json").read_text() == table1  # table1's records untouched
    again = figures.FigureStages(tmp_path, "pareto-k8")
    assert set(again.records) == {"train", "evaluate"}
    assert again.run("evaluate", "def", eval_out, work("twice", eval_out))


def _valid_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()


def test_pareto_table_and_plot(tmp_path):
    hps = ["layers.6.mlp"]
    rows = []
    for k, offset in ((32, 0.0), (8, 0.2)):
        rows += figures.rows(_evaluation(hps, offset), _summary(hps), "embedding", k=k)
    table = figures.frame(rows, ARCHS, by="k")
    assert list(table["architecture"].unique()) == list(ARCHS)  # the preset's order
    assert table.groupby("architecture")["k"].apply(list).tolist() == [[8, 32]] * 3

    fig = pareto.plot(table, "test")
    curves = [c for c in fig.axes[0].containers]
    assert len(curves) == len(ARCHS)
    figures.write(fig, table, tmp_path / "pareto.png", tmp_path / "pareto.csv")
    _valid_png(tmp_path / "pareto.png")
    back = pd.read_csv(tmp_path / "pareto.csv")
    assert len(back) == 6 and back["delta_ce"].notna().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.csv", "pareto.png"]


def test_layers_plot_and_layer_choice(tmp_path):
    hps = {"layers.2.mlp": 2, "layers.10.mlp": 10}
    rows = [
        {"layer": hps[r["hookpoint"]], **r}
        for r in figures.rows(_evaluation(list(hps)), _summary(list(hps)), "embedding")
    ]
    table = figures.frame(rows, ARCHS, by="layer")
    fig = layers.plot(table, "test")
    figures.write(fig, table, tmp_path / "layers.png", tmp_path / "layers.csv")
    _valid_png(tmp_path / "layers.png")
    assert len(pd.read_csv(tmp_path / "layers.csv")) == 6

    embedded = PRESETS["embedded"]  # 30 layers
    assert layers.choose_layers(embedded, None) == [3, 11, 18, 26]
    assert layers.choose_layers(embedded, "all") == list(range(30))
    assert layers.choose_layers(embedded, "6,2,6") == [2, 6]
    with pytest.raises(UserError, match="comma-separated"):
        layers.choose_layers(embedded, "2,six")
    from dataclasses import replace

    with pytest.raises(UserError, match="name the layers"):
        layers.choose_layers(replace(embedded, model="/some/other/model"), None)


def test_pareto_needs_one_hookpoint(tmp_path):
    with pytest.raises(UserError, match="--hookpoints"):
        pareto.sweep(PRESETS["pythia-160m"], [16], "embedding", tmp_path)


# A smoke preset shrunk further: 2 points per figure, 2 latents, a few hundred tokens.
TINY = [
    "--preset", "smoke", "--architectures", "sae,transcoder", "--expansion-factor", "1",
    "--train-tokens", str(2 * 8 * 64), "--ctx-len", "64", "--eval-tokens", "64",
    "--latents", "2", "--autointerp-tokens", "4096", "--device", "cpu",
]


def _invoke(command, args):
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _check(out, name, by, points, archs):
    _valid_png(out / f"{name}.png")
    table = pd.read_csv(out / f"{name}.csv")
    assert sorted(zip(table["architecture"], table[by])) == sorted(
        (a, p) for a in archs for p in points
    )
    numbers = table[["fvu", "delta_ce", "score", "score_low", "score_high", "shuffled"]]
    assert numbers.map(math.isfinite).all().all(), table
    assert (table["score_low"] <= table["score"]).all()
    assert (table["score"] <= table["score_high"]).all()


@pytest.mark.integration
def test_pareto_end_to_end(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = TINY + ["--ks", "8,16", "--out", str(out), "--work", str(work)]
    _invoke(pareto.main, args)
    _check(out, "pareto", "k", [8, 16], ["sae", "transcoder"])
    # A rerun reuses every stage.
    again = _invoke(pareto.main, args)
    assert again.output.count("] cached (") == 6 and "running" not in again.output


@pytest.mark.integration
def test_layers_end_to_end(tmp_path):
    out = tmp_path / "out"
    args = TINY + ["--layers", "2,6", "--out", str(out), "--work", str(tmp_path / "work")]
    _invoke(layers.main, args)
    _check(out, "layers", "layer", [2, 6], ["sae", "transcoder"])
