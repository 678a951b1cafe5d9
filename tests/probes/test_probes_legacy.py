"""Checkpoints in sparsify's format before Feb 2025 (no `transcode` key in cfg.json):
where neither cfg.json nor a measurement says what a coder reads, `evaluate` and
`autointerp` stop with one `Error:` line asking for `--reads`, never guess. And
`table1 --check`, which refuses a preset that cannot run with one `Error:` line."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner
from preset_fixtures import hub, offline_hub, smollm_corpus  # noqa: F401
from sparsify import SparseCoder, SparseCoderConfig

from reproductions import table1
from transcoders.cli import main

from probe import probe

MLP = "layers.1.mlp"


def old_format_zero_coder(folder: Path) -> Path:
    """A coder predicting exactly zero (so no site fits better than the other), with
    the cfg.json of sparsify before PR #49: no `transcode` key."""
    coder = SparseCoder(32, SparseCoderConfig(k=4, num_latents=64))
    with torch.no_grad():
        coder.W_dec.zero_()
    coder.save_to_disk(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.pop("transcode")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def error_line(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ")
    return line


@probe("evaluate", "a plain sparsify folder in the pre-Feb-2025 format (no `transcode` "
       "key) whose input and output fit equally badly",
       "one-line error with both FVUs asking for `--reads input` or `--reads output`")
def test_evaluate_asks_for_reads_when_measurement_cannot_tell(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    old_format_zero_coder(tmp_path / MLP)
    line = error_line("evaluate", tmp_path, "--model", tiny_lm_dir, "--dataset", tiny_corpus_dir,
                      "--tokens", 64, "--ctx-len", 32, "--device", "cpu")  # fmt: skip
    assert "no 'transcode' key" in line and "--reads input" in line and "--reads output" in line


@probe("autointerp", "the same ambiguous pre-Feb-2025 folder",
       "the same one-line error, before any latent is cached")
def test_autointerp_asks_for_reads_when_measurement_cannot_tell(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    run = old_format_zero_coder(tmp_path / "run" / MLP).parent
    line = error_line("autointerp", run, "--model", tiny_lm_dir, "--dataset", tiny_corpus_dir,
                      "--out", tmp_path / "out", "--device", "cpu")  # fmt: skip
    assert "--reads input" in line
    assert not (tmp_path / "out").exists()


@probe("evaluate", "`--reads input` on a `transcoders train` run",
       "one-line error: the run's folders name the architecture, leave `--reads` out")
def test_reads_refused_where_folders_name_the_architecture(tmp_path):
    SparseCoder(32, SparseCoderConfig(k=4, num_latents=64)).save_to_disk(tmp_path / "sae" / MLP)
    line = error_line("evaluate", tmp_path, "--reads", "input", "--device", "cpu")
    assert "leave --reads out" in line


# --- table1 --check ----------------------------------------------------------------


def run_check(preset_name: str, *args: str):
    return CliRunner().invoke(table1.main, ["--preset", preset_name, "--check", *args])


@probe("table1", "`--check` on a GPU preset whose HF dataset has no `validation` split "
       "(`--eval-split validation`)",
       "one-line error listing the dataset's splits and suggesting a held-out row range")
def test_check_names_a_split_that_does_not_exist(offline_hub, smollm_corpus):
    result = run_check("pythia-160m", "--dataset", str(smollm_corpus), "--eval-split", "validation")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "no split 'validation'" in line
    assert "its splits are train" in line and "train[99%:]" in line


@probe("table1", "`--check` with a token budget larger than the split "
       "(`--train-tokens` beyond `train[:1%]`)",
       "one-line error naming the split, its size and the flag, before any model loads")
def test_check_refuses_a_budget_the_split_cannot_hold(offline_hub, smollm_corpus):
    result = run_check("pythia-160m", "--dataset", str(smollm_corpus),
                       "--dataset-split", "train[:1%]")  # fmt: skip
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: training split") and "--train-tokens 1,000,000,000" in line
