"""Checkpoints in sparsify's format before PR #49 (Feb 2025): no `transcode` key in
cfg.json, and transcoders that encode `W_enc (x − b_dec)`. Evaluation and autointerp
must read them as what they are, never as SAEs, and check their input centring."""

from __future__ import annotations

import json

import pytest
import torch
from sparsify import SparseCoder
from tiny_eval import (
    LINEAR, exact_coder, legacy_coder, save_model_dir, save_old_format, tiny_model,
    write_corpus, zero_coder,
)  # fmt: skip

from transcoders import checkpoints, hub
from transcoders.activations import module_io
from transcoders.autointerp import pipeline
from transcoders.autointerp.config import AutointerpConfig
from transcoders.evaluation import EvalConfig, evaluate

WEIGHT = tiny_model().model.layers[0].mlp.down_proj.weight.detach().clone()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def b_dec() -> torch.Tensor:
    return torch.randn(WEIGHT.shape[0], generator=torch.Generator().manual_seed(0)) * 3


def old_dir(tmp_path, coder: SparseCoder):
    """A plain sparsify directory holding `coder` at LINEAR in the old format."""
    save_old_format(coder, tmp_path / LINEAR)
    return tmp_path


def evaluate_plain(run_dir, model_dir, corpus_dir, **kw) -> dict:
    return evaluate(EvalConfig(run_dir=str(run_dir), model=str(model_dir),
                               dataset=str(corpus_dir), tokens=256, ctx_len=16,
                               batch_size=4, device="cpu", **kw), progress=False)  # fmt: skip


@pytest.mark.parametrize("arch", ["transcoder", "skip-transcoder"])
def test_fixture_is_exact_only_with_the_legacy_centring(arch, tmp_path):
    """The fixture is what it claims: loaded the way sparsify 1.3 loads an old cfg.json
    (an SAE, which centres its input) it predicts the module exactly from its input."""
    folder = save_old_format(legacy_coder(arch, WEIGHT, b_dec()), tmp_path / LINEAR)
    assert "transcode" not in json.loads((folder / "cfg.json").read_text())
    coder = SparseCoder.load_from_disk(folder)
    assert not coder.cfg.transcode
    acts = module_io(tiny_model(), [LINEAR], torch.randint(0, 100, (4, 16)))[LINEAR]
    x, y = acts["input"].flatten(0, 1), acts["output"].flatten(0, 1)
    assert hub.fvu(coder(x).sae_out, y) < 1e-6
    assert hub.fvu(hub.as_transcoder(SparseCoder.load_from_disk(folder), False)(x).sae_out, y) > 0.5


@pytest.mark.parametrize("arch", ["transcoder", "skip-transcoder"])
def test_evaluate_reads_old_transcoders_input_and_checks_centring(arch, tmp_path, model_dir, corpus_dir):
    run = old_dir(tmp_path, legacy_coder(arch, WEIGHT, b_dec()))
    report = evaluate_plain(run, model_dir, corpus_dir)
    (row,) = report["results"]
    assert row["architecture"] == arch
    assert row["fvu"] < 1e-4 and abs(row["delta_ce"]) < 1e-4
    (record,) = report["identified"]
    # The centring check ran and found the legacy centring.
    assert record["input_centred"] is True
    assert record["fvu_input_centred"] < 1e-4 < record["fvu_uncentred"]
    if arch == "transcoder":  # no skip connection: classified by measurement
        assert record["fvu_reading_input"] < 1e-4 < record["fvu_reading_output"]
    else:  # skip_connection means a transcoder, whatever `transcode` says
        assert "fvu_reading_input" not in record


def test_evaluate_reads_an_old_sae_as_an_sae(tmp_path, model_dir, corpus_dir):
    run = old_dir(tmp_path, exact_coder("sae", WEIGHT))
    report = evaluate_plain(run, model_dir, corpus_dir)
    (row,) = report["results"]
    assert row["architecture"] == "sae" and row["fvu"] < 1e-4
    (record,) = report["identified"]
    assert record["fvu_reading_output"] < 1e-4 < record["fvu_reading_input"]


def test_centring_check_fixes_a_legacy_transcoder_saved_with_transcode_true(
    tmp_path, model_dir, corpus_dir
):
    """A legacy transcoder re-saved by a newer sparsify (`transcode: true`) encodes
    uncentred inputs as loaded; outside a plugin run the check folds the centring in."""
    legacy_coder("transcoder", WEIGHT, b_dec()).save_to_disk(tmp_path / LINEAR)
    report = evaluate_plain(tmp_path, model_dir, corpus_dir)
    assert report["results"][0]["fvu"] < 1e-4
    assert report["identified"][0]["input_centred"] is True


def test_unresolvable_checkpoint_asks_for_reads_and_reads_overrides(tmp_path, model_dir, corpus_dir):
    run = old_dir(tmp_path, zero_coder("sae"))
    with pytest.raises(hub.AmbiguousCheckpoint, match="--reads input"):
        evaluate_plain(run, model_dir, corpus_dir)
    report = evaluate_plain(run, model_dir, corpus_dir, reads="input")
    assert report["results"][0]["architecture"] == "transcoder"
    report = evaluate_plain(run, model_dir, corpus_dir, reads="output")
    assert report["results"][0]["architecture"] == "sae"
    assert report["identified"] == []


def test_reads_is_refused_where_the_layout_names_the_architecture(tmp_path):
    exact_coder("sae", WEIGHT).save_to_disk(tmp_path / "sae" / LINEAR)
    with pytest.raises(checkpoints.CheckpointError, match="leave --reads out"):
        checkpoints.find(tmp_path, reads="input")


def test_plugin_layout_trusts_the_folder_over_an_old_cfg(tmp_path):
    save_old_format(legacy_coder("transcoder", WEIGHT, b_dec()), tmp_path / "transcoder" / LINEAR)
    (ckpt,) = checkpoints.find(tmp_path)
    assert ckpt.architecture.name == "transcoder" and not ckpt.ambiguous


def test_autointerp_caches_old_transcoders_as_transcoders(tmp_path, model_dir, corpus_dir, monkeypatch):
    """run_autointerp hands its caching stage the checkpoints as measured."""
    run = old_dir(tmp_path / "run", legacy_coder("transcoder", WEIGHT, b_dec()))
    seen = {}

    def stop(ckpts, *args):
        seen["ckpts"] = ckpts
        return {}

    monkeypatch.setattr(pipeline, "_run", stop)
    cfg = AutointerpConfig(model=str(model_dir), dataset=str(corpus_dir), out=str(tmp_path / "ai"),
                           ctx_len=16)  # fmt: skip
    pipeline.run_autointerp(run, cfg)
    (ckpt,) = seen["ckpts"]
    assert ckpt.architecture.name == "transcoder" and ckpt.input_centred is True

