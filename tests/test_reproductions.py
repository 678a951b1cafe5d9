import dataclasses
import json
import shutil

import pytest
import torch
from sparsify import SparseCoder
from transformers import AutoConfig, AutoModelForCausalLM

from reproductions import presets, table1
from reproductions.stages import Stages, training_config
from transcoders import architectures, hub
from transcoders.checkpoints import find
from transcoders.evaluation import EvalConfig, evaluate
from transcoders.training import TrainingConfig, train
from transcoders.hookpoints import check_applicable, module_widths, resolve_hookpoints


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_preset_matches_its_models_hf_config(name):
    """Hookpoints exist, widths fit every architecture, latent counts are right,
    checked against the model's HF config class without downloading weights."""
    preset = presets.PRESETS[name]
    cfg = AutoConfig.for_model(**preset.model_config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)

    hookpoints = resolve_hookpoints(model, list(preset.hookpoints))
    if "*" in "".join(preset.hookpoints):
        assert hookpoints == [f"layers.{i}.mlp" for i in range(cfg.num_hidden_layers)]
    widths = module_widths(model, hookpoints)
    assert all(w == (cfg.hidden_size, cfg.hidden_size) for w in widths.values())

    latents = preset.num_latents or cfg.hidden_size * preset.expansion_factor
    for arch in preset.architectures:
        check_applicable(architectures.get(arch), widths, latents, preset.k)
    if name == "pythia-160m":
        assert latents == 32 * 768 and preset.k == 32
    if name == "llama-3.2-1b":
        assert latents == 32 * 2048 and preset.k == 32
    assert training_config(preset, "x").identity()["hookpoints"] == list(preset.hookpoints)


def test_every_preset_field_has_a_flag():
    from reproductions import layers, pareto

    for command in (table1.main, pareto.main, layers.main):
        defaults = {o.name: o.default for o in command.params}
        # No default of its own: an unset flag leaves the preset's (dataclass) value.
        assert all(defaults[f.name] is None for f in presets.OVERRIDABLE), command.name
    changed = presets.preset_overrides({"k": 64, "hookpoints": "layers.1.mlp, layers.2.mlp", "scorer_model": "none"})
    assert changed == {"k": 64, "hookpoints": ("layers.1.mlp", "layers.2.mlp"), "scorer_model": None}


def test_stages_rerun_only_what_changed(tmp_path):
    calls, output = [], tmp_path / "a.txt"

    def work(tag):
        return lambda: (calls.append(tag), output.write_text(tag))

    assert not Stages(tmp_path).run("a", "k1", output, work("a1"))
    assert Stages(tmp_path).run("a", "k1", output, work("again"))
    assert not Stages(tmp_path).run("a", "k2", output, work("a2"))
    assert not Stages(tmp_path).run("a", "k2", output, work("lost"), done=lambda: False)
    output.write_text("edited by hand")
    assert not Stages(tmp_path).run("a", "k2", output, work("edited"))
    output.unlink()
    assert not Stages(tmp_path).run("a", "k2", output, work("deleted"))
    assert Stages(tmp_path).run("a", "k2", output, work("cached"))
    assert calls == ["a1", "a2", "lost", "edited", "deleted"]
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"a"}


@pytest.mark.integration
def test_smoke_preset_end_to_end_and_cached_rerun(smoke_table1, tmp_path):
    preset = presets.get("smoke")
    results, work = smoke_table1
    table = results["table"]
    assert [r["architecture"] for r in table] == ["sae", "skip-transcoder", "transcoder"]
    for row in table:
        for column in ("FVU", "ΔCE", "KL", "loss recovered", "L0", "eligible % of live"):
            assert row[column] is not None
        dead = [c for c in row if c.startswith("dead % (")]
        assert len(dead) == 2 and all(row[c] is not None for c in dead)
        assert row["embedding"] != "n/a" and row["embedding shuffled"] != "n/a"
        assert row["embedding real − shuffled (paired by latent)"] != "n/a"
    for row in results["comparisons"]:
        assert row["embedding auroc (unpaired)"] != "n/a"
        assert "embedding auroc frequency-matched (unpaired)" in row
    assert {r["comparison"] for r in results["comparisons"]} == {
        "transcoder − sae", "skip-transcoder − transcoder", "skip-transcoder − sae"
    }
    # Two held-out sequences: from one play (no interval) or two.
    label = results["comparisons_splice_ci"]
    assert "paired bootstrap over 2 held-out sequences in" in label
    for row in results["comparisons"]:
        for column in ("FVU", "ΔCE", "KL"):
            diff, interval = row[column].split(" [")
            if "in 1 document" in label:
                assert interval == "n/a: one document]"
            else:
                low, high = map(float, interval.rstrip("]").split(", "))
                assert low <= float(diff) <= high
    for name in ("table1.md", "table1.csv", "results.json", "browser/index.html"):
        assert (work.parent / "out" / name).is_file()
    assert set(results["stage_wall_time_s"]) == {"train", "evaluate", "autointerp", "browse"}

    again = table1.run(preset, tmp_path / "out2", work)
    assert again["total_wall_time_s_this_invocation"] < 30
    assert again["table"] == table


def test_comparisons_give_paired_cis_for_splice_metrics():
    """A constructed evaluation: the transcoder's KL is its SAE's plus 0.02 per
    prediction on every sequence, so the paired interval is that shift exactly."""
    rng = torch.Generator().manual_seed(0)
    base = (torch.rand(12, generator=rng) * 10).double().tolist()

    def result(arch, shift):
        per_row = {"predictions": 10, "kl": [x + 10 * shift for x in base],
                   "delta_nll": base, "sse": base, "target_ss": [2 * x for x in base]}
        return {"architecture": arch, "hookpoint": "h", "per_row": per_row}

    evaluation = {"results": [result("sae", 0.0), result("transcoder", 0.02)],
                  "rows": {"count": 12, "documents": [0] * 6 + [1] * 6}}  # fmt: skip
    (row,) = table1.comparisons(evaluation, None).to_dict(orient="records")
    assert row["comparison"] == "transcoder − sae"
    assert row["KL"] == "0.0200 [0.0200, 0.0200]"
    assert row["FVU"] == "0.0000 [0.0000, 0.0000]"
    assert "paired bootstrap over 12 held-out sequences in 2 documents" in (
        table1.splice_ci_label(evaluation)
    )


def _hub_repo(cache, repo, folders: dict[str, SparseCoder]):
    """A local Hugging Face cache entry in sparsify's hub layout."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    for hookpoint, coder in folders.items():
        coder.save_to_disk(snapshot / hookpoint)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0" * 40)


def _unfold(coder: SparseCoder) -> SparseCoder:
    """The legacy form of a coder: what it would be if trained by a sparsify that
    subtracted b_dec from transcoder inputs."""
    with torch.no_grad():
        coder.encoder.bias += coder.encoder.weight @ coder.b_dec
    return coder


def test_pretrained_loads_from_offline_hub_cache_and_detects_legacy_centring(
    tmp_path, tiny_corpus_dir, monkeypatch
):
    # A tiny model whose last MLP has a large output bias, so b_dec is far from
    # zero there and mis-centred inputs matter.
    from conftest import tiny_llama, tiny_tokenizer

    model = tiny_llama()
    model.config.mlp_bias = True
    big = AutoModelForCausalLM.from_config(model.config)
    with torch.no_grad():
        big.model.layers[0].mlp.down_proj.bias.zero_()
        big.model.layers[1].mlp.down_proj.bias.normal_(0, 3.0)
    model_dir = tmp_path / "model"
    big.save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)

    run = tmp_path / "trained"
    train(TrainingConfig(
        out=str(run), model=str(model_dir), dataset=str(tiny_corpus_dir),
        architectures=["sae", "skip-transcoder"], hookpoints=["layers.*.mlp"],
        k=4, expansion_factor=2, tokens=32 * 4 * 8, eval_tokens=32 * 8, ctx_len=32,
        batch_size=4, lr=2e-4, device="cpu",
    ))
    load = lambda arch, hp: SparseCoder.load_from_disk(run / arch / hp)  # noqa: E731
    cache = tmp_path / "hub"
    _hub_repo(cache, "EleutherAI/sae-Llama-3.2-1B-131k",
              {"layers.0.mlp": load("sae", "layers.0.mlp"), "layers.1.mlp": load("sae", "layers.1.mlp")})
    _hub_repo(cache, "EleutherAI/skip-transcoder-Llama-3.2-1B-131k", {
        "layers.0.mlp": load("skip-transcoder", "layers.0.mlp"),
        "layers.1.mlp": _unfold(load("skip-transcoder", "layers.1.mlp")),
    })
    # layers.1.mlp in sparsify's format before PR #49: no `transcode` key either.
    legacy_cfg = next(cache.glob("models--*skip-transcoder*/snapshots/*/layers.1.mlp/cfg.json"))
    legacy_cfg.write_text(json.dumps(
        {k: v for k, v in json.loads(legacy_cfg.read_text()).items() if k != "transcode"}
    ))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    preset = dataclasses.replace(
        presets.get("llama-3.2-1b"), model=str(model_dir), dataset=str(tiny_corpus_dir),
        ctx_len=32, batch_size=4, eval_tokens=32 * 8, latents=0, device="cpu",
    )
    results = table1.run(preset, tmp_path / "out", tmp_path / "work", pretrained=True)

    run_dir = next((tmp_path / "work").glob("pretrained-*"))
    record = json.loads((run_dir / hub.IMPORT_RECORD).read_text())
    assert record["skip-transcoder/layers.1.mlp"]["legacy_input_centring"] is True
    assert record["skip-transcoder/layers.0.mlp"]["legacy_input_centring"] is False
    assert "legacy_input_centring" not in record["sae/layers.0.mlp"]
    fixed = json.loads((run_dir / "skip-transcoder" / "layers.1.mlp" / "cfg.json").read_text())
    assert fixed["transcode"] is True and not (run_dir / "skip-transcoder" / "layers.1.mlp" / "cfg.json").is_symlink()
    assert sorted((c.architecture.name, c.hookpoint) for c in find(run_dir)) == [
        ("sae", "layers.0.mlp"), ("sae", "layers.1.mlp"),
        ("skip-transcoder", "layers.0.mlp"), ("skip-transcoder", "layers.1.mlp"),
    ]
    # The corrected copy predicts exactly as the coder it was unfolded from.
    fvus = {(r["architecture"], r["hookpoint"]): r["fvu"] for r in results["evaluation"]["results"]}
    own = evaluate(EvalConfig(run_dir=str(run), tokens=32 * 8, batch_size=4, device="cpu"))
    for r in own["results"]:
        if r["hookpoint"] != "all":
            assert fvus[(r["architecture"], r["hookpoint"])] == pytest.approx(r["fvu"], rel=1e-4)
    assert {r["comparison"] for r in results["comparisons"]} == {"skip-transcoder − sae"}
    shutil.rmtree(cache)


def test_readme_table_is_generated_from_the_committed_results():
    from reproductions import readme

    text = (readme.REPO / "README.md").read_text()
    assert readme.render(text) == text, "README is stale: run python -m reproductions.readme"


def test_table_reports_dead_window_eligibility_and_matched_unpaired_differences():
    """build_table/comparisons from a summary made by `summarise`: dead % names its
    window, eligible fractions and Spearman appear, architecture differences are
    labelled unpaired and carry the frequency-matched one beside the raw one."""
    import pandas as pd

    from transcoders.autointerp.config import AutointerpConfig
    from transcoders.autointerp.summary import summarise

    rows = []
    for arch, live, eligible, shift in (("sae", 60, 50, 0.0), ("transcoder", 40, 20, 0.1)):
        for i in range(30):
            base = {"architecture": arch, "hookpoint": "h", "latent": i, "n_latents": 64,
                    "live_latents": live, "eligible_latents": eligible, "cache_tokens": 65_536,
                    "firing_count": 10 + i, "frequency": (10 + i) / 65_536,
                    "explanation": "x", "explanation_parsed": True, "scorer": "embedding",
                    "n": 10, "n_failed": 0, "accuracy": None, "balanced_accuracy": None, "f1": None}
            rows.append({**base, "shuffled": False, "auroc": 0.6 + shift + i / 1000})
            rows.append({**base, "shuffled": True, "auroc": 0.5})
    summary = summarise(pd.DataFrame(rows), AutointerpConfig(n_boot=200)).to_dict()
    counts = {c["architecture"]: c for c in summary["latent_counts"]}
    assert counts["transcoder"]["dead_fraction"] == pytest.approx(24 / 64)
    assert counts["transcoder"]["eligible_fraction"] == pytest.approx(0.5)

    def result(arch, fvu):
        per_row = {"sse": [fvu, fvu], "target_ss": [1.0, 1.0], "delta_nll": [0.1, 0.1],
                   "kl": [0.1, 0.1], "predictions": 1}
        return {"architecture": arch, "hookpoint": "h", "fvu": fvu, "delta_ce": 0.1, "kl": 0.1,
                "loss_recovered": 0.9, "l0": 32, "dead_fraction": 0.5, "tokens": 8192,
                "per_row": per_row}

    evaluation = {"tokens": 8192, "rows": {"count": 2, "documents": [0, 1]},
                  "results": [result("sae", 0.4), result("transcoder", 0.5)]}
    table = table1.build_table("m", evaluation, summary).set_index("architecture")
    assert table.loc["transcoder", "dead % (8,192 evaluation tokens)"] == 50
    assert table.loc["transcoder", "dead % (65,536 autointerp tokens)"] == pytest.approx(37.5)
    assert table.loc["sae", "eligible % of live"] == pytest.approx(100 * 50 / 60)
    assert table.loc["sae", "eligible % of all"] == pytest.approx(100 * 50 / 64)
    assert table.loc["sae", "embedding Spearman(frequency, score)"] == pytest.approx(1.0)
    assert table.loc["sae", "embedding real − shuffled (paired by latent)"].startswith("0.1")
    pairs = table1.comparisons(evaluation, summary)
    row = pairs.set_index("comparison").loc["transcoder − sae"]
    assert row["embedding auroc (unpaired)"].startswith("0.100 [")
    assert row["embedding auroc frequency-matched (unpaired)"].startswith("0.100 [")
    assert "100% of latents" in row["embedding auroc frequency-matched (unpaired)"]
    assert "paired by latent" not in " ".join(pairs.columns)


def test_autointerp_folder_changes_only_with_settings_that_change_saved_results(tmp_path):
    """More latents or another scorer resume in the same folder; another explainer
    or example length is a new folder."""
    from reproductions.stages import autointerp_run_config

    base = presets.get("embedded")
    folder = lambda **kw: autointerp_run_config(dataclasses.replace(base, **kw), tmp_path).out  # noqa: E731
    same = folder()
    assert folder(latents=base.latents * 2) == same
    assert folder(scorers=("detection",)) == same
    assert folder(explainer="local:tiny") != same
    assert folder(example_ctx_len=base.example_ctx_len * 2) != same
