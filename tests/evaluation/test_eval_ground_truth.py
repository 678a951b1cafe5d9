"""Splice evaluation against answers known without the code under test."""

from __future__ import annotations

import pytest
import torch
from sparsify import SparseCoder
from tiny_eval import LINEAR, MLP, D, exact_coder, random_coder, random_ids, save_run
from tiny_eval import tiny_model, zero_coder
from torch import nn

from transcoders import checkpoints
from transcoders.activations import module_io
from transcoders.evaluation import evaluate_coders, splice

ARCHS = ["sae", "transcoder", "skip-transcoder"]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def ids():
    return random_ids(rows=12, seq=16)


def run_eval(model, run, ids, **kwargs):
    coders = [(c, c.load()) for c in checkpoints.find(run)]
    rows = evaluate_coders(model, coders, ids.split(4), progress=False, **kwargs)
    return {(r["architecture"], r["hookpoint"]): r for r in rows}


def test_identity_splice_leaves_logits_unchanged(model, ids):
    clean = model(ids).logits
    with splice(model, {MLP: lambda inputs, outputs: outputs}):
        spliced = model(ids).logits
    assert torch.equal(clean, spliced)


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def loss_with_mlp_deleted(model, ids, layer: int) -> float:
    """Zero ablation written independently: swap the MLP module for one that
    returns zeros, and let transformers compute the loss."""
    layer_module = model.model.layers[layer]
    original = layer_module.mlp
    layer_module.mlp = Zero()
    try:
        return model(ids, labels=ids).loss.item()
    finally:
        layer_module.mlp = original


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_coder_gives_zero_delta_ce_and_kl(model, ids, tmp_path, arch):
    weight = model.model.layers[0].mlp.down_proj.weight
    dead = 8
    run = save_run(tmp_path, {(arch, LINEAR): exact_coder(arch, weight, dead=dead)})
    row = run_eval(model, run, ids)[arch, LINEAR]

    assert row["delta_ce"] == pytest.approx(0, abs=1e-5)
    assert row["kl"] == pytest.approx(0, abs=1e-6)
    assert row["fvu"] == pytest.approx(0, abs=1e-9)
    assert row["explained_variance"] == pytest.approx(1, abs=1e-9)
    assert row["ce_zero"] - row["ce_clean"] > 0.01  # deleting the module matters
    assert row["loss_recovered"] == pytest.approx(1, abs=1e-4)

    # One latent of each +-pair fires per coordinate (exact zeros never occur here).
    read = module_io(model, [LINEAR], ids)[LINEAR][
        "input" if arch != "sae" else "output"
    ].flatten(0, 1)
    assert (read != 0).all()
    assert row["l0"] == D
    never_signed = int((~(read > 0).any(0)).sum() + (~(read < 0).any(0)).sum())
    assert row["dead_fraction"] == (dead + never_signed) / (2 * D + dead)
    assert row["firing_histogram"]["dead"] == dead + never_signed
    assert sum(row["firing_histogram"]["counts"]) == 2 * D - never_signed
    assert row["tokens"] == ids.numel()


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_coder_reproduces_ce_zero(model, ids, tmp_path, arch):
    run = save_run(tmp_path, {(arch, MLP): zero_coder(arch)})
    row = run_eval(model, run, ids)[arch, MLP]
    assert row["ce_spliced"] == row["ce_zero"]
    assert row["loss_recovered"] == 0
    assert row["fvu"] == pytest.approx(1 + _mean_sq_over_var(model, ids), rel=1e-6)
    expected = loss_with_mlp_deleted(model, ids, layer=1)
    assert row["ce_zero"] == pytest.approx(expected, rel=1e-5)
    clean = model(ids, labels=ids).loss.item()
    assert row["ce_clean"] == pytest.approx(clean, rel=1e-5)


def _mean_sq_over_var(model, ids) -> float:
    """For a zero prediction, SSE = total variance + N * |mean|^2."""
    y = module_io(model, [MLP], ids)[MLP]["output"].flatten(0, 1).double()
    mean = y.mean(0)
    return (len(y) * mean.pow(2).sum() / (y - mean).pow(2).sum()).item()


@pytest.mark.parametrize("arch", ["sae", "skip-transcoder"])
def test_delta_ce_matches_a_hook_written_here(model, ids, tmp_path, arch):
    run = save_run(tmp_path, {(arch, MLP): random_coder(arch)})
    row = run_eval(model, run, ids)[arch, MLP]

    coder = SparseCoder.load_from_disk(tmp_path / arch / MLP)

    def hook(module, inputs, output):
        x = inputs[0] if arch != "sae" else output
        return coder(x.flatten(0, 1)).sae_out.view_as(output)

    clean = model(ids, labels=ids).loss.item()
    handle = model.model.layers[1].mlp.register_forward_hook(hook)
    try:
        spliced = model(ids, labels=ids).loss.item()
    finally:
        handle.remove()

    assert abs(spliced - clean) > 0.01  # a random coder must hurt
    assert row["delta_ce"] == pytest.approx(spliced - clean, rel=1e-4, abs=1e-6)


def test_kl_of_a_splice_matches_direct_computation(model, ids, tmp_path):
    run = save_run(tmp_path, {("transcoder", MLP): random_coder("transcoder")})
    row = run_eval(model, run, ids)["transcoder", MLP]
    coder = SparseCoder.load_from_disk(tmp_path / "transcoder" / MLP)

    p = model(ids).logits[:, :-1].double().softmax(-1)
    handle = model.model.layers[1].mlp.register_forward_hook(
        lambda m, i, o: coder(i[0].flatten(0, 1)).sae_out.view_as(o)
    )
    try:
        q = model(ids).logits[:, :-1].double().softmax(-1)
    finally:
        handle.remove()
    kl = (p * (p.log() - q.log())).sum(-1).mean().item()
    assert kl > 1e-3
    assert row["kl"] == pytest.approx(kl, rel=1e-4)


def test_splice_all_of_exact_and_zero_coders(model, ids, tmp_path):
    weight = model.model.layers[0].mlp.down_proj.weight
    run = save_run(
        tmp_path,
        {
            ("sae", LINEAR): exact_coder("sae", weight),
            ("sae", MLP): exact_coder("sae", torch.eye(D)),
            ("transcoder", LINEAR): zero_coder("transcoder"),
            ("transcoder", MLP): zero_coder("transcoder"),
        },
    )
    rows = run_eval(model, run, ids, splice_all=True)
    exact, zero = rows["sae", "all"], rows["transcoder", "all"]
    assert exact["delta_ce"] == pytest.approx(0, abs=1e-5)
    assert exact["kl"] == pytest.approx(0, abs=1e-6)
    assert zero["ce_spliced"] == zero["ce_zero"]
    assert exact["spliced_hookpoints"] == [LINEAR, MLP]

    # Deleting both MLPs, written independently: layer 0's whole MLP output is
    # down_proj's output, so zeroing down_proj deletes it.
    layers = model.model.layers
    saved = [layers[0].mlp, layers[1].mlp]
    layers[0].mlp, layers[1].mlp = Zero(), Zero()
    try:
        both = model(ids, labels=ids).loss.item()
    finally:
        layers[0].mlp, layers[1].mlp = saved
    assert zero["ce_zero"] == pytest.approx(both, rel=1e-5)
    # Zeroing both hurts differently from zeroing either alone.
    assert zero["ce_zero"] != rows["transcoder", MLP]["ce_zero"]
