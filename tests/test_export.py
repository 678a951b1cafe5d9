"""Exports to circuit-tracer and SAELens: the target library itself, run in the
second environment (`make circuits-env`), must compute what the plugin's coders do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder

from transcoders.architectures import get
from transcoders.export import ExportError, export, verify
from transcoders.export.api import TOLERANCE, CircuitsEnvMissing, circuits_python

try:
    circuits_python()
    NO_ENV = None
except CircuitsEnvMissing as err:
    NO_ENV = str(err)
needs_env = pytest.mark.skipif(NO_ENV is not None, reason=f"{NO_ENV}")


def random_coder(arch: str, d_in: int, seed: int, *, k: int = 4) -> SparseCoder:
    """A coder whose every weight is random and whose weight matrices are all square
    (latents = width), so a transposed tensor loads without a shape error and only
    its different function can reveal it."""
    torch.manual_seed(seed)
    coder = SparseCoder(d_in, get(arch).coder_config(k=k, num_latents=d_in))
    with torch.no_grad():
        for p in coder.parameters():
            p.copy_(torch.randn_like(p) / d_in**0.5)
    return coder


@pytest.fixture(scope="module")
def sparsify_dir(tmp_path_factory, tiny_lm_dir) -> Path:
    """A plain sparsify directory (no manifest) with every architecture on both MLPs
    of the tiny Llama: `<dir>/<arch>/layers.{0,1}.mlp/`."""
    root = tmp_path_factory.mktemp("sparsify")
    for i, arch in enumerate(("sae", "transcoder", "skip-transcoder")):
        for layer in (0, 1):
            random_coder(arch, 32, seed=10 * i + layer).save_to_disk(root / arch / f"layers.{layer}.mlp")
    return root


def tiny_ids() -> torch.Tensor:
    return torch.randint(0, 257, (2, 16), generator=torch.Generator().manual_seed(0))


def test_circuit_tracer_export_layout(sparsify_dir, tiny_lm_dir, tmp_path):
    record = export(sparsify_dir, "circuit-tracer", tmp_path / "ct", model=str(tiny_lm_dir))
    assert set(record["exported"]) == {"transcoder", "skip-transcoder"}
    assert "sae" in record["skipped"]
    skip = tmp_path / "ct" / "skip-transcoder"
    assert sorted(p.name for p in skip.iterdir()) == [
        "config.yaml", "layer_0.safetensors", "layer_1.safetensors"]
    tensors = load_file(skip / "layer_1.safetensors")
    coder = SparseCoder.load_from_disk(sparsify_dir / "skip-transcoder" / "layers.1.mlp")
    assert torch.equal(tensors["W_skip"], coder.W_skip)
    assert torch.equal(tensors["W_enc"], coder.encoder.weight)
    assert str(tiny_lm_dir) in (tmp_path / "ct" / "README.md").read_text()


def test_export_refuses_what_the_target_cannot_represent(sparsify_dir, tmp_path):
    with pytest.raises(ExportError, match="--to circuit-tracer"):
        export(sparsify_dir, "saelens", tmp_path / "sl", architectures=["transcoder"])
    with pytest.raises(ExportError, match="needs transcoders"):
        export(sparsify_dir, "circuit-tracer", tmp_path / "ct", architectures=["sae"])
    with pytest.raises(ExportError, match="--to must be"):
        export(sparsify_dir, "neuronpedia", tmp_path / "np")
    assert not (tmp_path / "sl").exists() and not (tmp_path / "ct").exists()


@needs_env
def test_circuit_tracer_computes_the_same_function(sparsify_dir, tiny_lm_dir, tmp_path):
    export(sparsify_dir, "circuit-tracer", tmp_path / "ct", model=str(tiny_lm_dir))
    errors = verify(tmp_path / "ct", tiny_ids())
    assert set(errors) == {f"{a}/layers.{i}.mlp" for a in ("transcoder", "skip-transcoder") for i in (0, 1)}
    for key, errs in errors.items():
        assert set(errs) == {"output", "latents", "output_sparse"}
        assert max(errs.values()) < TOLERANCE, (key, errs)


@needs_env
def test_saelens_computes_the_same_function(sparsify_dir, tiny_lm_dir, tmp_path):
    record = export(sparsify_dir, "saelens", tmp_path / "sl", model=str(tiny_lm_dir))
    assert set(record["exported"]) == {"sae"}
    errors = verify(tmp_path / "sl", tiny_ids())
    assert set(errors) == {"sae/layers.0.mlp", "sae/layers.1.mlp"}
    for key, errs in errors.items():
        assert set(errs) == {"output", "latents"}
        assert max(errs.values()) < TOLERANCE, (key, errs)


def corrupt(file: Path, change) -> None:
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, str(file))


def transpose(name):
    return lambda t: t.__setitem__(name, t[name].T.contiguous())


@needs_env
@pytest.mark.parametrize(
    "target, arch, file, change",
    [
        ("circuit-tracer", "skip-transcoder", "layer_1.safetensors", transpose("W_skip")),
        ("circuit-tracer", "skip-transcoder", "layer_1.safetensors", lambda t: t.pop("W_skip")),
        ("circuit-tracer", "transcoder", "layer_1.safetensors", transpose("W_enc")),
        ("circuit-tracer", "transcoder", "layer_1.safetensors", transpose("W_dec")),
        ("saelens", "sae", "layers.1.mlp/sae_weights.safetensors", transpose("W_enc")),
        ("saelens", "sae", "layers.1.mlp/sae_weights.safetensors", transpose("W_dec")),
    ],
    ids=["ct-W_skip-transposed", "ct-skip-dropped", "ct-W_enc-transposed",
         "ct-W_dec-transposed", "saelens-W_enc-transposed", "saelens-W_dec-transposed"],
)
def test_verify_catches_a_wrong_export(sparsify_dir, tiny_lm_dir, tmp_path, target, arch, file, change):
    out = tmp_path / "export"
    export(sparsify_dir, target, out, architectures=[arch], model=str(tiny_lm_dir))
    corrupt(out / arch / file, change)
    errors = verify(out, tiny_ids())
    key = f"{arch}/layers.1.mlp"
    assert errors[key]["output"] > 1e-2, errors[key]
    assert max(errors[f"{arch}/layers.0.mlp"].values()) < TOLERANCE


@pytest.mark.integration
@needs_env
@pytest.mark.parametrize("target, archs", [
    ("circuit-tracer", {"transcoder", "skip-transcoder"}),
    ("saelens", {"sae"}),
])
def test_exports_of_an_embedded_run_match_on_real_activations(embedded_run, tmp_path, target, archs):
    """The trained run of the embedded model, on held-out Shakespeare activations."""
    record = export(embedded_run, target, tmp_path / "out")
    assert set(record["exported"]) == archs and record["model"] == "embedded"
    errors = verify(tmp_path / "out")
    assert set(errors) == {f"{a}/layers.6.mlp" for a in archs}
    for key, errs in errors.items():
        assert max(errs.values()) < TOLERANCE, (key, errs)


def test_a_pretrained_import_exports_with_its_manifests_model(sparsify_dir, tmp_path):
    """`--pretrained` imports link the hub's files into the plugin's layout and record
    the model in manifest.json; the export follows the links and names that model."""
    run = tmp_path / "pretrained-abc"
    for name in ("cfg.json", "sae.safetensors"):
        (run / "skip-transcoder" / "layers.0.mlp").mkdir(parents=True, exist_ok=True)
        (run / "skip-transcoder" / "layers.0.mlp" / name).symlink_to(
            sparsify_dir / "skip-transcoder" / "layers.0.mlp" / name)
    (run / "manifest.json").write_text(json.dumps({"config": {"model": "meta-llama/Llama-3.2-1B"}}))
    record = export(run, "circuit-tracer", tmp_path / "ct")
    assert record["model"] == "meta-llama/Llama-3.2-1B"
    assert record["exported"]["skip-transcoder"]["layers"] == [0]
    assert record["exported"]["skip-transcoder"]["complete_set"]
