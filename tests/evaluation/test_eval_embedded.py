"""Evaluating the embedded-default run (SmolLM2-135M-Instruct on Shakespeare)."""

from __future__ import annotations

import json
import math

import pytest

from transcoders.evaluation import EvalConfig, evaluate

HOOKPOINT = "layers.6.mlp"


@pytest.mark.integration
def test_embedded_run(embedded_run):
    manifest = json.loads((embedded_run / "manifest.json").read_text())
    # By default the run's own held-out rows are evaluated.
    report = evaluate(EvalConfig(str(embedded_run), device="cpu"), progress=False)
    assert report["tokens"] == manifest["eval_tokens"]
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
        # The same held-out rows as training's own FVU, computed by separate code
        # (training/heldout.py).
        expected = manifest["architectures"][arch]["fvu"][HOOKPOINT]
        assert row["fvu"] == pytest.approx(expected, rel=1e-4)
