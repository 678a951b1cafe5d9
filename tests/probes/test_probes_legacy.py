"""Checkpoints in sparsify's format before Feb 2025 (no `transcode` key in cfg.json):
where neither cfg.json nor a measurement says what a coder reads, `evaluate` and
`autointerp` stop with one `Error:` line asking for `--reads`, never guess."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner
from sparsify import SparseCoder, SparseCoderConfig

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
