"""`transcoders evaluate` on a whole run directory: files, table, and bad input."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sparsify import SparseCoder
from transformers import AutoModelForCausalLM, AutoTokenizer
from tiny_eval import D, MLP, random_coder, save_model_dir, save_run, write_corpus

from transcoders import architectures
from transcoders.cli import main
from transcoders.data import load_corpus, tokenize
from transcoders.evaluation import EvalConfig, evaluate, paired_difference
from transcoders.evaluation.evaluate import COLUMNS

ARGS = ["--tokens", "256", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def make_run(path, model_dir, corpus_dir, coders, status="complete"):
    save_run(path, coders)
    archs = {arch for arch, _ in coders}
    manifest = {
        "config": {"model": str(model_dir), "dataset": str(corpus_dir), "ctx_len": 16,
                   "seed": 0, "eval_tokens": 320,
                   "hookpoints": sorted({h for _, h in coders})},
        "architectures": {arch: {"status": status} for arch in archs},
    }  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def evaluate_cli(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory, model_dir, corpus_dir):
    coders = {(arch, MLP): random_coder(arch) for arch in ["sae", "transcoder"]}
    return make_run(tmp_path_factory.mktemp("run"), model_dir, corpus_dir, coders)


def test_evaluate_writes_files_and_prints_table(run, model_dir):
    result = evaluate_cli(run, *ARGS, "--splice-all")
    assert result.exit_code == 0, result.output
    for word in ["architecture", "delta_ce", "loss_recovered", "dead_fraction"]:
        assert word in result.output

    report = strict_json(run / "evaluation.json")
    assert report["config"]["model"] == str(model_dir)
    assert report["config"]["ctx_len"] == 16
    assert report["tokens"] == 256
    rows = {(r["architecture"], r["hookpoint"]): r for r in report["results"]}
    assert set(rows) == {(a, h) for a in ["sae", "transcoder"] for h in [MLP, "all"]}
    for arch in ["sae", "transcoder"]:
        single, together = rows[arch, MLP], rows[arch, "all"]
        assert single["fvu"] > 0 and single["l0"] > 0
        assert single["explained_variance"] == pytest.approx(1 - single["fvu"])
        delta = single["ce_spliced"] - single["ce_clean"]
        assert single["delta_ce"] == pytest.approx(delta)
        # One hookpoint: splicing "all" of them is the same splice.
        assert together["ce_spliced"] == pytest.approx(single["ce_spliced"], rel=1e-6)
        assert "fvu" not in together  # reconstruction is per coder
    assert len({r["ce_clean"] for r in rows.values()}) == 1

    csv = pd.read_csv(run / "evaluation.csv")
    assert list(csv.columns) == COLUMNS
    assert len(csv) == 4
    assert not list(run.glob(".evaluation*"))  # no temporary files left


def test_evaluation_json_records_each_rows_document(tmp_path, model_dir):
    """Twenty files, two held out: every row is labelled with one of the two, and
    the paired bootstrap runs on the file as written."""
    corpus = write_corpus(tmp_path / "corpus", files=20)
    coders = {(arch, MLP): random_coder(arch) for arch in ["sae", "transcoder"]}
    run = make_run(tmp_path / "run", model_dir, corpus, coders)
    evaluate_cli(run, *ARGS)
    report = strict_json(run / "evaluation.json")
    assert report["rows"]["count"] == 16
    assert sorted(set(report["rows"]["documents"])) == [0, 1]
    diff, low, high = paired_difference(report, "transcoder", "sae", MLP, "fvu")
    rows = {r["architecture"]: r for r in report["results"]}
    assert diff == pytest.approx(rows["transcoder"]["fvu"] - rows["sae"]["fvu"])
    assert low <= diff <= high


def test_evaluate_agrees_with_a_hook_written_here(run, model_dir, corpus_dir):
    """ΔCE of one checkpoint, recomputed with transformers' own loss and a hook."""
    report = evaluate(EvalConfig(str(run), tokens=256, batch_size=4, device="cpu"))
    (row,) = [r for r in report["results"] if r["architecture"] == "transcoder"]

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenize(
        load_corpus(str(corpus_dir), split="eval"),
        AutoTokenizer.from_pretrained(model_dir), ctx_len=16, max_tokens=256, seed=0,
    )[:]["input_ids"]  # fmt: skip
    coder = SparseCoder.load_from_disk(run / "transcoder" / MLP)

    def hook(module, inputs, output):
        return coder(inputs[0].flatten(0, 1)).sae_out.view_as(output)

    with torch.no_grad():
        clean = model(ids, labels=ids).loss.item()
        handle = model.model.layers[1].mlp.register_forward_hook(hook)
        try:
            spliced = model(ids, labels=ids).loss.item()
        finally:
            handle.remove()
    assert abs(spliced - clean) > 0.01
    assert row["delta_ce"] == pytest.approx(spliced - clean, rel=1e-4)


def test_tokens_default_to_the_runs_eval_tokens(tmp_path, model_dir, corpus_dir):
    run = make_run(tmp_path, model_dir, corpus_dir, {("sae", MLP): random_coder("sae")})
    result = evaluate_cli(run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert strict_json(run / "evaluation.json")["tokens"] == 320


def test_incomplete_architecture_is_flagged(tmp_path, model_dir, corpus_dir):
    run = make_run(tmp_path, model_dir, corpus_dir, {("sae", MLP): random_coder("sae")},
                   status="running")  # fmt: skip
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 0, result.output
    assert "training of 'sae' did not complete" in result.output


def test_plain_sparsify_folder_needs_model(tmp_path, model_dir, corpus_dir):
    random_coder("skip-transcoder").save_to_disk(tmp_path / MLP)
    result = evaluate_cli(tmp_path, *ARGS, "--dataset", corpus_dir, "--ctx-len", 16)
    assert result.exit_code != 0
    assert "pass --model" in result.output

    result = evaluate_cli(tmp_path, *ARGS, "--dataset", corpus_dir, "--ctx-len", 16,
                          "--model", model_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = strict_json(tmp_path / "evaluation.json")["results"]
    assert row["architecture"] == "skip-transcoder"


def test_no_checkpoints(tmp_path):
    result = evaluate_cli(tmp_path, *ARGS)
    assert result.exit_code == 1
    assert f"No checkpoints in {tmp_path}" in result.output


def test_width_mismatch_names_file_and_module(tmp_path, model_dir, corpus_dir):
    cfg = architectures.get("sae").coder_config(num_latents=64, k=4)
    coders = {("sae", MLP): SparseCoder(D // 2, cfg)}
    run = make_run(tmp_path, model_dir, corpus_dir, coders)
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 1
    assert str(run / "sae" / MLP / "cfg.json") in result.output
    assert f"d_in={D // 2}" in result.output and f"'{MLP}'" in result.output


def test_missing_hookpoint_suggests_close_names(tmp_path, model_dir, corpus_dir):
    coders = {("sae", "layers.7.mlp"): random_coder("sae")}
    run = make_run(tmp_path, model_dir, corpus_dir, coders)
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 1
    assert str(run / "sae" / "layers.7.mlp") in result.output
    assert "Hookpoint 'layers.7.mlp' matches no module. Closest modules: " + MLP in result.output


def test_truncated_weights_name_the_file(tmp_path, model_dir, corpus_dir):
    run = make_run(tmp_path, model_dir, corpus_dir, {("sae", MLP): random_coder("sae")})
    weights = run / "sae" / MLP / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 1
    assert f"Could not load {weights}" in result.output


def test_corrupt_config_names_the_file(tmp_path, model_dir, corpus_dir):
    run = make_run(tmp_path, model_dir, corpus_dir, {("sae", MLP): random_coder("sae")})
    cfg = run / "sae" / MLP / "cfg.json"
    cfg.write_text(cfg.read_text()[:20])
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 1
    assert f"{cfg} is not valid JSON" in result.output


def test_corrupt_manifest_names_the_file(tmp_path, model_dir, corpus_dir):
    run = make_run(tmp_path, model_dir, corpus_dir, {("sae", MLP): random_coder("sae")})
    (run / "manifest.json").write_text("{")
    result = evaluate_cli(run, *ARGS)
    assert result.exit_code == 1
    assert f"{run / 'manifest.json'} is not valid JSON" in result.output
    shutil.rmtree(run)
