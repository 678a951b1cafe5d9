"""Evaluating the embedded-default run (SmolLM2-135M-Instruct on Shakespeare)."""

from __future__ import annotations

import json
import math

import pytest
from sparsify import SparseCoder

from transcoders.data import load_corpus, load_model, tokenize
from transcoders.evaluation import EvalConfig, evaluate

HOOKPOINT = "layers.6.mlp"


@pytest.mark.integration
def test_embedded_run(embedded_run):
    manifest = json.loads((embedded_run / "manifest.json").read_text())
    run_cfg = manifest["config"]
    tokens = manifest["eval_tokens"]
    report = evaluate(
        EvalConfig(str(embedded_run), tokens=tokens, device="cpu"), progress=False
    )
    rows = {r["architecture"]: r for r in report["results"]}
    assert set(rows) == {"sae", "transcoder", "skip-transcoder"}

    for arch, row in rows.items():
        assert row["hookpoint"] == HOOKPOINT
        for key in ["fvu", "ce_clean", "ce_spliced", "kl", "ce_zero", "loss_recovered"]:
            assert math.isfinite(row[key]), (arch, key)
        assert 0 < row["l0"] <= row["k"]
        assert 0 <= row["dead_fraction"] <= 1
        assert row["ce_zero"] > row["ce_clean"]  # deleting the MLP hurts
        assert row["kl"] > 0
        # The same held-out rows as training's own FVU (training/heldout.py).
        expected = manifest["architectures"][arch]["fvu"][HOOKPOINT]
        assert row["fvu"] == pytest.approx(expected, rel=1e-4)

    # ΔCE of the transcoder, recomputed with a hook written here and transformers'
    # own loss.
    model, tokenizer = load_model(run_cfg["model"])
    ids = tokenize(
        load_corpus(run_cfg["dataset"], split="eval"), tokenizer,
        ctx_len=run_cfg["ctx_len"], max_tokens=tokens, seed=run_cfg["seed"],
    )[:]["input_ids"]  # fmt: skip
    coder = SparseCoder.load_from_disk(embedded_run / "transcoder" / HOOKPOINT)
    clean = model(ids, labels=ids).loss.item()
    mlp = model.model.layers[6].mlp
    handle = mlp.register_forward_hook(
        lambda m, i, o: coder(i[0].flatten(0, 1)).sae_out.view_as(o)
    )
    try:
        spliced = model(ids, labels=ids).loss.item()
    finally:
        handle.remove()
    assert rows["transcoder"]["delta_ce"] == pytest.approx(spliced - clean, rel=1e-3)
