"""`python -m reproductions.table1 --preset NAME --check`, offline, against fixtures
shaped like the hub repos the presets name (tests/preset_fixtures.py)."""

from __future__ import annotations

import dataclasses

import pytest
from preset_fixtures import DATASET_ROWS, as_fixture, hub, offline_hub, smollm_corpus  # noqa: F401

from reproductions import presets
from reproductions.check import PresetCheckError, check


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_check_passes_for_every_preset(name, offline_hub, smollm_corpus, tmp_path):
    preset = as_fixture(presets.PRESETS[name], smollm_corpus)
    lines = check(preset, tmp_path)
    text = "\n".join(lines)
    assert f"model: {preset.model}" in text
    assert "held-out:" in text and "disk: latent cache" in text and "GPU memory" in text
    if name in ("pythia-160m", "llama-3.2-1b"):
        hidden = preset.model_config["hidden_size"]
        layers = preset.model_config["num_hidden_layers"]
        assert f"hookpoints: {layers} (layers.0.mlp … layers.{layers - 1}.mlp)" in text
        assert f"{32 * hidden:,} latents (32x), k=32" in text
        assert "32-token examples, 40 to explain, 50 activating and 50 non-activating" in text
        assert "explainer: vllm:meta-llama/" in text and "judge: vllm:meta-llama/" in text
        assert f"{preset.dataset} train[99%:]: {DATASET_ROWS // 100:,} rows" in text


def test_pretrained_check_skips_the_training_split(offline_hub, smollm_corpus, tmp_path):
    preset = as_fixture(presets.get("llama-3.2-1b"), smollm_corpus)
    text = "\n".join(check(preset, tmp_path, pretrained=True))
    assert "training:" not in text and "held-out:" in text


def test_check_refuses_overlapping_held_out_rows(offline_hub, smollm_corpus, tmp_path):
    preset = dataclasses.replace(as_fixture(presets.get("pythia-160m"), smollm_corpus),
                                 eval_split="train[10%:11%]")  # fmt: skip
    with pytest.raises(PresetCheckError, match="overlap the training rows"):
        check(preset, tmp_path)


def test_check_names_a_model_that_is_not_available_offline(offline_hub, tmp_path):
    preset = dataclasses.replace(presets.get("embedded"), model="EleutherAI/not-cached")
    with pytest.raises(PresetCheckError, match="model 'EleutherAI/not-cached' cannot be resolved"):
        check(preset, tmp_path)


def test_paper_presets_use_delphis_autointerp_setting():
    from reproductions.stages import autointerp_config

    for name in ("pythia-160m", "llama-3.2-1b"):
        cfg = autointerp_config(presets.get(name))
        assert (cfg.example_ctx_len, cfg.n_examples_train, cfg.n_examples_test,
                cfg.n_non_activating) == (32, 40, 50, 50)  # fmt: skip
        assert {"detection", "fuzzing"} <= set(cfg.scorers)
        assert cfg.split == "train[99%:]"  # a row range, not a nonexistent `eval` split


def test_run_refuses_a_budget_before_loading_the_model(offline_hub, smollm_corpus, tmp_path):
    """The fixture repo has a config and no weights: reaching the model would fail
    otherwise, so the budget error proves the check comes first."""
    from reproductions import table1

    preset = dataclasses.replace(as_fixture(presets.get("pythia-160m"), smollm_corpus),
                                 dataset_split="train[:1%]")  # fmt: skip
    with pytest.raises(PresetCheckError, match="training split .* --train-tokens"):
        table1.run(preset, tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_local_copy_of_a_dataset_repo_loads_like_the_hub_id(smollm_corpus, tiny_corpus_dir, tmp_path):
    import shutil

    from transcoders.data import load_corpus
    from transcoders.data.corpus import is_hf

    assert is_hf(str(smollm_corpus)) and not is_hf(str(tiny_corpus_dir))
    # Without the card, whose row count describes the full repo, not this sample.
    shutil.copytree(smollm_corpus / "data", tmp_path / "repo" / "data")
    held_out = load_corpus(str(tmp_path / "repo"), "eval", hf_split="train[95%:]")
    assert len(held_out) == 4 and held_out.column_names == ["text"]


def test_check_refuses_a_hosted_judge_without_its_key(offline_hub, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    preset = dataclasses.replace(presets.get("smoke"), scorers=("detection",),
                                 scorer_model="openrouter:some/model")  # fmt: skip
    with pytest.raises(PresetCheckError, match="judge openrouter:some/model needs .*OPENROUTER_API_KEY"):
        check(preset, tmp_path)
