"""Training on normalised activations: the scale rule, the exact fold, and that a
folded checkpoint, loaded by plain sparsify or read by Delphi, computes the function
the coder was trained to compute."""

import json

import pytest
import torch
from delphi.sparse_coders.load_sparsify import sae_dense_latents
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder

from transcoders import architectures
from transcoders.activations import module_io
from transcoders.data import load_model
from transcoders.training import checkpoint as ckpt_module
from transcoders.training import train
from transcoders.training.normalize import fold, scale_of, unfold_

from test_training import tiny_config


@pytest.mark.parametrize("rms", [1e-3, 0.3, 1.0, 7.0, 900.0])
def test_scale_is_a_power_of_two_giving_unit_mean_square(rms):
    acts = torch.randn(4, 50, 64) * rms
    scale = scale_of(acts)
    assert scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())
    mean_square = (acts * scale).pow(2).mean().item()
    assert 0.5 <= mean_square <= 2.0


def test_scale_refuses_silent_activations():
    with pytest.raises(ValueError, match="all zero"):
        scale_of(torch.zeros(3, 8))


def _trained_coder(arch_name: str, d: int = 24) -> SparseCoder:
    """A random coder with every weight nonzero, as if trained on scaled activations."""
    torch.manual_seed(0)
    cfg = architectures.get(arch_name).coder_config(k=5, num_latents=4 * d)
    coder = SparseCoder(d, cfg)
    with torch.no_grad():
        for p in coder.parameters():
            p.normal_(0, 0.3)
        if not cfg.transcode:
            coder.set_decoder_norm_to_unit_norm()
    return coder


@pytest.mark.parametrize("arch_name", ["sae", "transcoder", "skip-transcoder"])
def test_folded_coder_computes_the_trained_function_on_raw_activations(arch_name):
    arch = architectures.get(arch_name)
    s_in, s_out = (8.0, 0.25) if arch.reads == "input" else (0.5, 0.5)
    trained = _trained_coder(arch_name)
    folded = _trained_coder(arch_name)
    folded.load_state_dict(fold(trained.state_dict(), s_in, s_out))

    raw = torch.randn(200, trained.d_in) * 3
    with torch.no_grad():
        want = trained(raw * s_in)
        got = folded(raw)
    torch.testing.assert_close(got.sae_out, want.sae_out / s_out, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.latent_indices, want.latent_indices)
    torch.testing.assert_close(got.latent_acts, want.latent_acts / s_out, rtol=1e-5, atol=1e-7)
    # Delphi's sparsify loader encodes with the folded weights alike.
    dense = sae_dense_latents(raw[None], folded)[0]
    torch.testing.assert_close(
        dense.gather(-1, want.latent_indices), want.latent_acts / s_out, rtol=1e-5, atol=1e-7
    )
    if arch_name == "sae":
        norms = folded.W_dec.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_unfold_restores_the_training_weights_bit_for_bit():
    trained = _trained_coder("skip-transcoder")
    coder = _trained_coder("skip-transcoder")
    coder.load_state_dict(fold(trained.state_dict(), 16.0, 0.125))
    unfold_(coder, 16.0, 0.125)
    for name, value in trained.state_dict().items():
        assert torch.equal(coder.state_dict()[name], value), name


def test_saved_checkpoints_are_the_trained_coders_folded(tmp_path, tiny_lm_dir, tiny_corpus_dir, monkeypatch):
    """Train with normalisation; the checkpoint that plain `load_from_disk` reads must
    give, on raw activations, what the coder in the trainer gives on scaled ones."""
    trained: dict[str, SparseCoder] = {}
    real_fit = ckpt_module.AtomicTrainer.fit

    def keeping_fit(self):
        real_fit(self)
        # The saved weights are schedule-free's average, its eval-mode weights.
        for optimizer in self.optimizers:
            if isinstance(optimizer, ScheduleFreeWrapper):
                optimizer.eval()
        trained[self.cfg.run_name] = {h: c for h, c in self.saes.items()}

    monkeypatch.setattr(ckpt_module.AtomicTrainer, "fit", keeping_fit)
    out = tmp_path / "run"
    manifest = train(tiny_config(out, tiny_lm_dir, tiny_corpus_dir, normalize=True))
    on_disk = json.loads((out / "manifest.json").read_text())
    scales = on_disk["normalization"]["layers.1.mlp"]
    assert scales != {"input": 1.0, "output": 1.0}, "the test needs scales other than 1"

    model, _ = load_model(str(tiny_lm_dir))
    ids = torch.randint(0, 200, (4, 32))
    io = module_io(model, ["layers.1.mlp"], ids)["layers.1.mlp"]
    for arch_name, record in manifest.architectures.items():
        arch = architectures.get(arch_name)
        s_in, s_out = record["training_scales"]["layers.1.mlp"]
        assert (s_in, s_out) == (scales[arch.reads], scales["output"])
        loaded = SparseCoder.load_from_disk(out / arch_name / "layers.1.mlp")
        x = io[arch.reads].flatten(0, 1)
        with torch.no_grad():
            want = trained[arch_name]["layers.1.mlp"](x * s_in).sae_out / s_out
            got = loaded(x).sae_out
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
