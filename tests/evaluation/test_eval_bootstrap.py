"""Paired cluster bootstrap of splice-metric differences, on constructed data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from sparsify.data import chunk_and_tokenize
from tiny_eval import MLP, char_tokenizer, random_coder, random_ids, save_run, tiny_model

from transcoders import checkpoints
from transcoders.data.corpus import row_documents
from transcoders.evaluation import evaluate_coders, metrics, paired_difference
from transcoders.evaluation.bootstrap import describe, ratio_samples, resample_weights


def evaluation_of(results: list[dict], documents: list[int] | None, count: int) -> dict:
    return {"results": results, "rows": {"count": count, "documents": documents}}


def fake_result(arch: str, numerator, predictions: int = 10) -> dict:
    """A result row whose per-row KL sums are `numerator`."""
    return {"architecture": arch, "hookpoint": MLP,
            "per_row": {"predictions": predictions, "kl": list(numerator)}}  # fmt: skip


def width(low: float, high: float) -> float:
    return high - low


def test_paired_ci_is_narrower_than_unpaired_when_rows_are_correlated():
    rng = np.random.default_rng(0)
    difficulty = rng.gamma(2.0, 5.0, size=200)  # shared by both architectures
    a = difficulty + rng.normal(0, 0.2, 200) + 1.0
    b = difficulty + rng.normal(0, 0.2, 200)
    evaluation = evaluation_of([fake_result("a", a), fake_result("b", b)], None, 200)

    diff, low, high = paired_difference(evaluation, "a", "b", MLP, "kl", n_boot=4000)
    assert diff == pytest.approx((a.sum() - b.sum()) / 2000)
    assert low < 0.1 < high  # the true shift is 1.0 per row / 10 predictions

    # Unpaired: each architecture resampled on its own.
    groups, den = np.arange(200), np.full(200, 10.0)
    unpaired = ratio_samples(a, den, groups, 4000, seed=1) - ratio_samples(
        b, den, groups, 4000, seed=2
    )
    u_low, u_high = np.percentile(unpaired, [2.5, 97.5])
    assert width(low, high) < 0.2 * width(u_low, u_high)


def test_ratio_bootstrap_matches_point_metrics(tmp_path):
    model, ids = tiny_model(), random_ids(rows=12, seq=16)
    run = save_run(tmp_path, {(arch, MLP): random_coder(arch, seed=i)
                              for i, arch in enumerate(["sae", "transcoder"])})  # fmt: skip
    coders = [(c, c.load()) for c in checkpoints.find(run)]
    results = evaluate_coders(model, coders, ids.split(5), progress=False)
    by_arch = {r["architecture"]: r for r in results}
    evaluation = evaluation_of(results, None, 12)

    for arch, r in by_arch.items():
        per_row = r["per_row"]
        assert len(per_row["sse"]) == len(per_row["target_ss"]) == 12
        assert sum(per_row["sse"]) / sum(per_row["target_ss"]) == pytest.approx(r["fvu"], rel=1e-9)
        assert sum(per_row["delta_nll"]) / (12 * 15) == pytest.approx(r["delta_ce"], rel=1e-6)
        assert sum(per_row["kl"]) / (12 * 15) == pytest.approx(r["kl"], rel=1e-9)
    for metric in ("fvu", "delta_ce", "kl"):
        diff, low, high = paired_difference(evaluation, "transcoder", "sae", MLP, metric)
        expected = by_arch["transcoder"][metric] - by_arch["sae"][metric]
        assert diff == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert low <= diff <= high


def test_row_target_ss_is_each_rows_variance_about_the_pooled_mean():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(6, 5, 3, generator=gen) * torch.tensor([1.0, 2.0, 3.0]) + 4
    recon = metrics.RowReconstruction()
    for part in y.split(4):
        recon.add(torch.zeros_like(part), part)
    yn = y.double().numpy()
    expected = ((yn - yn.reshape(-1, 3).mean(0)) ** 2).sum((1, 2))
    assert recon.row_target_ss() == pytest.approx(expected.tolist(), rel=1e-10)
    assert recon.row_sse == pytest.approx((yn**2).sum((1, 2)).tolist(), rel=1e-10)


def test_clusters_resample_whole_documents():
    # Document 7 holds three rows of value 1, document 3 one row of value 3: a
    # resample holds both documents (mean 1.5), or one of them twice (1 or 3).
    values, documents = np.array([1.0, 1.0, 3.0, 1.0]), np.array([7, 7, 3, 7])
    replicates = ratio_samples(values, np.ones(4), documents, n_boot=500, seed=0)
    assert set(np.round(replicates, 9)) == {1.0, 1.5, 3.0}

    inverse, weights = resample_weights(documents, n_boot=50, seed=0)
    assert inverse.tolist() == [1, 1, 0, 1]
    assert (weights.sum(1) == 2).all()  # two documents drawn each time

    # Rows as their own clusters: row-level resamples give other means too.
    rows = ratio_samples(values, np.ones(4), np.arange(4), n_boot=500, seed=0)
    assert len(set(np.round(rows, 9))) > 3


def test_clustered_interval_is_wider_when_documents_differ():
    rng = np.random.default_rng(0)
    documents = np.repeat(np.arange(8), 25)
    effect = rng.normal(0, 1.0, 8)[documents]  # a's advantage varies by document
    a = 5 + effect + rng.normal(0, 0.1, 200)
    b = np.full(200, 5.0)
    results = [fake_result("a", a), fake_result("b", b)]
    clustered = paired_difference(evaluation_of(results, documents.tolist(), 200),
                                  "a", "b", MLP, "kl", n_boot=4000)  # fmt: skip
    by_row = paired_difference(evaluation_of(results, None, 200), "a", "b", MLP, "kl",
                               n_boot=4000)  # fmt: skip
    assert clustered[0] == by_row[0]
    assert width(*clustered[1:]) > 3 * width(*by_row[1:])
    assert describe(evaluation_of(results, documents.tolist(), 200)) == (
        "paired bootstrap over 200 held-out sequences in 8 documents"
    )


def test_same_seed_same_interval_and_missing_statistics_are_named():
    a, b = np.arange(20.0), np.arange(20.0)[::-1]
    evaluation = evaluation_of([fake_result("a", a), fake_result("b", b)], None, 20)
    first = paired_difference(evaluation, "a", "b", MLP, "kl", seed=3)
    assert paired_difference(evaluation, "a", "b", MLP, "kl", seed=3) == first
    with pytest.raises(ValueError, match="rerun `transcoders evaluate`"):
        paired_difference({"results": evaluation["results"]}, "a", "b", MLP, "kl")


def test_row_documents_is_the_document_of_each_rows_first_token():
    docs = ["a" * 30, "b" * 5, "c" * 3, "d" * 40, "e" * 17]
    tok = char_tokenizer("abcde")
    rows = chunk_and_tokenize(Dataset.from_dict({"text": docs}), tok, max_seq_len=9,
                              num_proc=1, load_from_cache_file=False)  # fmt: skip
    # Independently, from lengths: document i is its EOS separator plus its text.
    starts = np.cumsum([0] + [1 + len(d) for d in docs])
    expected = [int(np.searchsorted(starts, 9 * r, side="right") - 1) for r in range(len(rows))]
    assert row_documents(rows, tok) == expected
    assert expected[:6] == [0, 0, 0, 0, 1, 3]  # doc 2 starts in a row, none of its own


def test_one_document_gives_no_interval():
    a, b = np.arange(10.0), np.zeros(10)
    evaluation = evaluation_of([fake_result("a", a), fake_result("b", b)], [4] * 10, 10)
    diff, low, high = paired_difference(evaluation, "a", "b", MLP, "kl")
    assert diff == pytest.approx(0.45)
    assert np.isnan(low) and np.isnan(high)


def test_row_documents_with_a_bos_before_each_separator():
    # Token 0 is EOS, 5 is BOS. Document 1 starts inside row 1 and owns no row.
    rows = Dataset.from_dict({"input_ids": [[5, 0, 1, 1], [1, 1, 0, 1], [5, 0, 2, 2]]})
    tok = SimpleNamespace(eos_token_id=0, bos_token_id=5)
    assert row_documents(rows, tok) == [0, 0, 2]
    # Rows that do not open with a separator were not chunked as sparsify chunks.
    assert row_documents(Dataset.from_dict({"input_ids": [[1, 1], [0, 1]]}), tok) is None
