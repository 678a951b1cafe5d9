"""Every benchmark runs end to end at a toy size on a tiny random model, and the
performance page renders from its results, so `make bench` can't rot unnoticed.
The figures themselves are meaningless at this size; only the plumbing is checked."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("delphi")

from benchmarks import autointerp, caching, coder_flops, replay, report, training  # noqa: E402
from benchmarks.common import save  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-results")


def test_training(tiny_lm_dir, tiny_corpus_dir, results):
    r = training.run(training.TrainingBench(
        model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir), hookpoints=["layers.0.mlp"],
        k=4, batch_size=2, ctx_len=16, warmup_steps=1, steps=2, repeats=1,
    ))
    v = r["hookpoints"]["layers.0.mlp"]
    assert len(v["plugin"]["samples"]) == len(v["sparsify"]["samples"]) == 2
    assert v["plugin"]["layers_run"] == 1 and v["sparsify"]["layers_run"] == 2
    assert v["speedup"] > 0
    save("training", r, results)


def test_replay(tiny_lm_dir, tiny_corpus_dir, results):
    r = replay.run(replay.ReplayBench(
        model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir), hookpoint="layers.0.mlp",
        k=4, batch_size=2, ctx_len=16, steps=2, repeats=1,
    ))
    assert len(r["plugin"]["samples"]) == len(r["sparsify"]["samples"]) == 1
    assert r["tokens_per_architecture"] == 2 * 2 * 16 and r["speedup"] > 0
    save("replay", r, results)


def test_coder_flops(tiny_lm_dir, tiny_corpus_dir, results):
    r = coder_flops.run(coder_flops.CoderFlopsBench(
        model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir), hookpoint="layers.0.mlp",
        k=4, batch_size=2, ctx_len=16, warmup_steps=1, steps=2, repeats=1,
        matmul_reps=2, profile_steps=1,
    ))
    for arch, v in r["architectures"].items():
        assert len(v["step_s"]["samples"]) == 2, arch
        assert v["fraction_of_matmul"] > 0 and v["profile"]["ops"], arch
        assert 0 < v["profile"]["dense_matmul_share"] < 1, arch
    # The skip connection adds its d x d products to the count.
    n, d, latents = 32, 32, 512
    assert coder_flops.coder_flops("skip-transcoder", n, d, latents, 4) == (
        coder_flops.coder_flops("transcoder", n, d, latents, 4) + 4 * n * d * d
    )
    save("coder_flops", r, results)


def test_caching(tiny_lm_dir, tiny_corpus_dir, results):
    r = caching.run(caching.CachingBench(
        model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir), hookpoint="layers.0.mlp",
        k=4, token_counts=[64, 128], ctx_len=16, batch_size=2, n_splits=2, buffer_size=64,
    ))
    assert r["same_as_delphi"], r["measurements"]
    for m in r["measurements"]:
        assert m["plugin"]["peak_rss_bytes"] > 0 and m["delphi"]["peak_rss_bytes"] > 0
        assert m["plugin"]["flushes"] >= 1
    save("caching", r, results)


def test_autointerp(tiny_lm_dir, tiny_corpus_dir, results):
    r = autointerp.run(autointerp.AutointerpBench(
        model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir), hookpoint="layers.0.mlp",
        cache_tokens=1024, ctx_len=32, latents=2, examples=2, example_ctx_len=8,
        examples_per_prompt=2, batch_size=4, max_tokens=4, repeats=1,
    ))
    assert r["batched"]["median"] > 0 and r["one_at_a_time"]["median"] > 0
    save("autointerp", r, results)


def test_page_renders_every_result(results):
    names = sorted(p.stem for p in results.glob("*.json"))
    assert names == ["autointerp", "caching", "coder_flops", "replay", "training"]
    page = report.render(results)
    assert "No result yet" not in page
    machine = json.loads((results / "training.json").read_text())["machine"]
    assert machine["cpu"] in page
    for heading in ("## Targets", "## Training", "## Coder training", "## Latent caching",
                    "## Autointerp"):
        assert heading in page
    assert "layers.0.mlp" in page


def test_page_without_results_says_so(tmp_path):
    page = report.render(tmp_path)
    assert page.count("No result yet") == 5
