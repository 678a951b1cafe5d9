"""Latent caching: Delphi reads it, it holds the right activations, and it matches
what Delphi's own `LatentCache` writes on the same input."""

import shutil
from functools import partial

import numpy as np
import pytest
import torch
from delphi.config import ConstructorConfig, SamplerConfig
from delphi.latents import LatentCache, LatentDataset
from delphi.sparse_coders.load_sparsify import sae_dense_latents
from safetensors.numpy import load_file
from tiny_autointerp import HOOKPOINTS, random_tokens, tiny_model, tiny_run, tiny_tokenizer

from transcoders import checkpoints
from transcoders.activations import module_io
from transcoders.autointerp import cache

CTX = 16
CONFIG = {"model_name": "tiny", "cache_ctx_len": CTX}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    run = tiny_run(root / "run")
    model = tiny_model()
    tokens = random_tokens(12, CTX)
    ckpts = checkpoints.find(run)
    report = cache.cache_latents(
        model, ckpts, tokens, root / "out", config=CONFIG, batch_size=4, n_splits=3,
        buffer_size=50,
    )
    return root, model, tokens, ckpts, report


def dataset(latents_dir, hookpoint, example_ctx_len=4):
    return LatentDataset(
        raw_dir=latents_dir,
        sampler_cfg=SamplerConfig(n_examples_train=2, n_examples_test=2, n_quantiles=1),
        constructor_cfg=ConstructorConfig(min_examples=1, n_non_activating=1, example_ctx_len=example_ctx_len),
        tokenizer=tiny_tokenizer(),
        modules=[hookpoint],
    )


def test_delphi_reads_the_cache_and_activations_equal_encode(setup):
    root, model, tokens, ckpts, _ = setup
    io = module_io(model, list(HOOKPOINTS), tokens)
    for ckpt in ckpts:
        coder = ckpt.load()
        site = "input" if ckpt.architecture.name != "sae" else "output"
        x = io[ckpt.hookpoint][site]
        dense = sae_dense_latents(x, coder)  # [seq, pos, latent]

        ds = dataset(root / "out" / ckpt.architecture.name / "latents", ckpt.hookpoint)
        assert torch.equal(ds.tokens, tokens)
        seen = torch.zeros_like(dense, dtype=torch.bool)
        for buffer in ds.buffers:
            for data in buffer:
                loc = data.activation_data.locations
                expected = dense[loc[:, 0], loc[:, 1], loc[:, 2]].half()
                assert torch.equal(data.activation_data.activations, expected), ckpt
                seen[loc[:, 0], loc[:, 1], loc[:, 2]] = True
        # Every nonzero activation, and nothing else, was cached.
        assert torch.equal(seen, dense.abs() > cache.NONZERO), ckpt
        # And Delphi builds latent records from it.
        records = list(ds)
        assert records and all(r.train for r in records)


def test_sae_and_transcoder_read_different_sites(setup):
    """The same encoder weights on input vs output would give different latents; check
    the cache really used each architecture's own site by swapping them."""
    root, model, tokens, ckpts, _ = setup
    io = module_io(model, list(HOOKPOINTS), tokens)
    tc = next(c for c in ckpts if c.architecture.name == "transcoder")
    wrong = sae_dense_latents(io[tc.hookpoint]["output"], tc.load()).half()
    file = next((root / "out" / "transcoder" / "latents" / tc.hookpoint).glob("0_*.safetensors"))
    data = load_file(file)
    loc = data["locations"].astype(np.int64)
    assert not torch.equal(torch.from_numpy(data["activations"]), wrong[loc[:, 0], loc[:, 1], loc[:, 2]])


@pytest.mark.parametrize("arch,transcode", [("sae", False), ("transcoder", True)])
def test_files_equal_delphis_latent_cache(setup, tmp_path, arch, transcode):
    root, model, tokens, ckpts, _ = setup
    mine = [c for c in ckpts if c.architecture.name == arch]
    encode = {c.hookpoint: partial(sae_dense_latents, sae=c.load()) for c in mine}
    theirs = LatentCache(model.base_model, encode, batch_size=4, transcode=transcode)
    theirs.run(tokens.numel(), tokens)
    theirs.save_splits(n_splits=3, save_dir=tmp_path)

    for ckpt in mine:
        ours_dir = root / "out" / arch / "latents" / ckpt.hookpoint
        names = sorted(p.name for p in (tmp_path / ckpt.hookpoint).glob("*.safetensors"))
        assert names == sorted(p.name for p in ours_dir.glob("*.safetensors"))
        for name in names:
            a, b = load_file(tmp_path / ckpt.hookpoint / name), load_file(ours_dir / name)
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].dtype == b[key].dtype, (name, key)
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def test_memory_is_bounded_by_the_buffer(tmp_path):
    """Peak entries held in memory stay at the buffer size however many tokens are
    cached; more tokens only mean more flushes to disk."""
    run = tiny_run(tmp_path / "run", archs=("transcoder",), hookpoints=("layers.0.mlp",))
    model, ckpts = tiny_model(), checkpoints.find(run)
    reports = [
        cache.cache_latents(
            model, ckpts, random_tokens(n, CTX), tmp_path / f"out{n}", config=CONFIG,
            batch_size=2, buffer_size=100,
        )
        for n in (8, 32)
    ]
    batch_entries = 2 * CTX * 4  # sequences x positions x k
    for report in reports:
        assert report.peak_buffer_entries < 100 + batch_entries
    assert reports[1].flushes >= 3 * reports[0].flushes


def test_forward_stops_after_the_last_hookpoint(tmp_path):
    run = tiny_run(tmp_path / "run", archs=("sae",), hookpoints=("layers.0.mlp",))
    model = tiny_model()
    ran = []
    for name in ("layers.1", "norm"):
        model.model.get_submodule(name).register_forward_hook(lambda *a, n=name: ran.append(n))
    model.lm_head.register_forward_hook(lambda *a: ran.append("lm_head"))
    cache.cache_latents(
        model, checkpoints.find(run), random_tokens(4, CTX), tmp_path / "out",
        config=CONFIG, batch_size=2,
    )
    assert ran == []


def test_is_complete_marks_a_finished_cache(setup, tmp_path):
    root, _, _, ckpts, _ = setup
    assert cache.is_complete(root / "out", ckpts, CONFIG, 3)
    assert not cache.is_complete(root / "out", ckpts, {**CONFIG, "cache_ctx_len": 8}, 3)
    assert not cache.is_complete(root / "out", ckpts, CONFIG, 4)
    # A retrained coder (other weights, same config) does not match the old cache.
    other = checkpoints.find(tiny_run(tmp_path / "run", seed=1))
    assert not cache.is_complete(root / "out", other, CONFIG, 3)


def test_a_damaged_cache_is_reported_and_not_complete(setup, tmp_path, caplog):
    root, _, _, ckpts, _ = setup
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    split = sorted(cache.latents_dir(out, "sae").glob("*/*.safetensors"))[1]
    split.write_bytes(split.read_bytes()[:-10])
    assert not cache.is_complete(out, ckpts, CONFIG, 3)
    assert caplog.messages == [f"{split} is truncated or corrupt (Error while deserializing "
                               "header: incomplete metadata, file not fully covered); caching latents again"]
