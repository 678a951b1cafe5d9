import json
import math

import pytest
import torch
from safetensors.torch import load_file
from sparsify import SparseCoder

from transcoders.architectures import UnknownArchitecture
from transcoders.checkpoints import find
from transcoders.evaluation.evaluate import incomplete
from transcoders.run import Manifest, warn_unfinished
from transcoders.data import CorpusError, load_model
from transcoders.errors import UserError
from transcoders.training import HookpointError, RunDirError, TrainingConfig, train
from transcoders.training import checkpoint as ckpt_module
from transcoders.training.truncate import truncated

from conftest import tiny_llama


def tiny_config(out, model_dir, corpus_dir, **overrides) -> TrainingConfig:
    fields = dict(
        out=str(out),
        model=str(model_dir),
        dataset=str(corpus_dir),
        hookpoints=["layers.1.mlp"],
        k=4,
        expansion_factor=2,
        tokens=32 * 4 * 6,
        eval_tokens=32 * 8,
        ctx_len=32,
        batch_size=4,
        save_every=2,
        # sparsify's default LR scales with 1/sqrt(latents): 0.08 for 64 latents;
        # signSGD moves every weight by the LR each step, which swamps this tiny
        # model's small MLP outputs (W_skip above all).
        lr=2e-4,
        device="cpu",
    )
    return TrainingConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_lm_dir, tiny_corpus_dir):
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    manifest = train(tiny_config(out, tiny_lm_dir, tiny_corpus_dir))
    return out, manifest


def test_every_architecture_trains_into_sparsify_layout(tiny_run):
    out, manifest = tiny_run
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest.to_dict()
    for arch in ("sae", "transcoder", "skip-transcoder"):
        record = manifest.architectures[arch]
        assert record["status"] == "complete"
        assert record["wall_time_s"] > 0
        fvu = record["fvu"]["layers.1.mlp"]
        assert math.isfinite(fvu) and 0 <= fvu < 2
        weights = load_file(out / arch / "layers.1.mlp" / "sae.safetensors")
        assert ("W_skip" in weights) == (arch == "skip-transcoder")
        cfg = json.loads((out / arch / "layers.1.mlp" / "cfg.json").read_text())
        assert cfg["transcode"] == (arch != "sae") and cfg["d_in"] == 32
    assert manifest.train_tokens == 32 * 4 * 6
    assert manifest.versions["eai-sparsify"] == "1.3.3"
    assert [c.architecture.name for c in find(out)] == [
        "sae", "skip-transcoder", "transcoder"
    ]


def _recomputed_fvus(run, layer: int) -> dict[str, float]:
    """Held-out FVU from plain sparsify loading and this test's own hook and formula."""
    from transcoders.data import load_corpus, tokenize

    cfg = json.loads((run / "manifest.json").read_text())["config"]
    model, tokenizer = load_model(cfg["model"])
    rows = tokenize(load_corpus(cfg["dataset"], "eval"), tokenizer,
                    ctx_len=cfg["ctx_len"], max_tokens=cfg["eval_tokens"], seed=cfg["seed"])
    seen = []
    mlp = model.model.layers[layer].mlp
    handle = mlp.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.no_grad():
        for batch in rows[:]["input_ids"].split(8):
            model(batch)
    handle.remove()
    x = torch.cat([i for i, _ in seen]).flatten(0, 1).double()
    y = torch.cat([o for _, o in seen]).flatten(0, 1).double()

    fvus = {}
    for arch in ("sae", "transcoder", "skip-transcoder"):
        coder = SparseCoder.load_from_disk(run / arch / f"layers.{layer}.mlp")
        with torch.no_grad():
            pred = coder((y if arch == "sae" else x).float()).sae_out.double()
        fvus[arch] = (((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()).item()
    return fvus


def test_checkpoints_are_portable_and_manifest_fvu_is_reproducible(tiny_run):
    out, manifest = tiny_run
    for arch, fvu in _recomputed_fvus(out, layer=1).items():
        assert abs(fvu - manifest.architectures[arch]["fvu"]["layers.1.mlp"]) < 1e-3


@pytest.mark.integration
def test_embedded_checkpoints_reproduce_the_manifest_fvu(embedded_run):
    manifest = Manifest.read(embedded_run)
    for arch, fvu in _recomputed_fvus(embedded_run, layer=6).items():
        assert abs(fvu - manifest.architectures[arch]["fvu"]["layers.6.mlp"]) < 1e-3


def test_all_architectures_see_the_same_tokens(tmp_path, tiny_lm_dir, tiny_corpus_dir, monkeypatch):
    seen: dict[str, list] = {}
    real_fit = ckpt_module.AtomicTrainer.fit

    def recording_fit(self):
        batches = seen.setdefault(self.cfg.run_name, [])
        handle = self.model.register_forward_pre_hook(lambda m, a: batches.append(a[0].clone()))
        try:
            real_fit(self)
        finally:
            handle.remove()

    monkeypatch.setattr(ckpt_module.AtomicTrainer, "fit", recording_fit)
    train(tiny_config(tmp_path / "run", tiny_lm_dir, tiny_corpus_dir))
    streams = [torch.cat(seen[a]) for a in ("sae", "transcoder", "skip-transcoder")]
    assert streams[0].shape == (32 * 6 // 32 * 4, 32) or streams[0].numel() == 32 * 4 * 6
    assert all(torch.equal(streams[0], s) for s in streams[1:])


def test_truncated_model_gives_the_same_activations():
    model = tiny_llama()
    cut = truncated(model, ["layers.0.mlp"])
    assert len(cut.layers) == 1 and len(model.model.layers) == 2
    assert cut.layers[0] is model.model.layers[0]

    ids = torch.randint(0, 257, (2, 16))
    grab = {}
    for name, m in (("full", model), ("cut", cut)):
        h = m.base_model.layers[0].mlp.register_forward_hook(
            lambda mod, i, o, name=name: grab.__setitem__(name, o)
        )
        with torch.no_grad():
            m(ids)
        h.remove()
    torch.testing.assert_close(grab["full"], grab["cut"])
    assert truncated(model, ["norm"]) is model.base_model


def test_interrupted_run_keeps_last_checkpoint_and_resumes(tmp_path, tiny_lm_dir, tiny_corpus_dir, monkeypatch):
    cfg = tiny_config(tmp_path / "run", tiny_lm_dir, tiny_corpus_dir, save_every=1)
    real_save = ckpt_module.Trainer.save
    calls = {"n": 0}

    def interrupted_save(self):
        # The third checkpoint is interrupted half-way, like Ctrl-C during a save.
        calls["n"] += 1
        if calls["n"] == 3:
            coder = next(iter(self.saes.values()))
            coder.save_to_disk(f"{self.cfg.save_dir}/{self.cfg.run_name}/layers.1.mlp")
            raise KeyboardInterrupt
        real_save(self)

    monkeypatch.setattr(ckpt_module.Trainer, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(ckpt_module.Trainer, "save", real_save)

    state = torch.load(tmp_path / "run" / "sae" / "state.pt", weights_only=True)
    assert state["global_step"] == 2  # the second save, after two batches, survived
    SparseCoder.load_from_disk(tmp_path / "run" / "sae" / "layers.1.mlp")

    with pytest.raises(RunDirError, match="--resume"):
        train(cfg)
    manifest = train(cfg, resume=True)
    assert manifest.architectures["sae"]["resumed_from_step"] == 2
    assert all(r["status"] == "complete" for r in manifest.architectures.values())


def test_recover_finishes_an_interrupted_swap(tmp_path):
    previous = tmp_path / ".staging" / "sae.previous"
    previous.mkdir(parents=True)
    (previous / "state.pt").write_bytes(b"x")
    assert ckpt_module.recover(tmp_path, "sae") == tmp_path / "sae"
    assert (tmp_path / "sae" / "state.pt").exists() and not previous.exists()
    assert ckpt_module.recover(tmp_path, "transcoder") is None


def test_different_run_in_out_dir_is_refused_unless_overwrite(tiny_run, tmp_path, tiny_lm_dir, tiny_corpus_dir):
    out, _ = tiny_run
    with pytest.raises(RunDirError, match="differs in: k"):
        train(tiny_config(out, tiny_lm_dir, tiny_corpus_dir, k=3))
    with pytest.raises(RunDirError, match="already holds this run"):
        train(tiny_config(out, tiny_lm_dir, tiny_corpus_dir))

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a transcoders run"):
        train(tiny_config(stranger, tiny_lm_dir, tiny_corpus_dir), overwrite=True)
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]  # no lock file left

    copy = tmp_path / "copy"
    train(tiny_config(copy, tiny_lm_dir, tiny_corpus_dir, architectures=["sae"]))
    manifest = train(
        tiny_config(copy, tiny_lm_dir, tiny_corpus_dir, architectures=["sae"], k=3),
        overwrite=True,
    )
    assert manifest.config["k"] == 3


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(architectures=["sae", "transcodr"]), UnknownArchitecture, "Known: sae"),
        (dict(hookpoints=["layers.1.mpl"]), HookpointError, "Closest modules: layers.1.mlp"),
        (dict(k=65), UserError, "larger than the number of latents"),
        (dict(tokens=32 * 3), CorpusError, "less than one batch"),
        (dict(tokens=10**7), CorpusError, "corpus has only"),
        (
            dict(architectures=["transcoder"], hookpoints=["layers.1.mlp.up_proj"]),
            HookpointError,
            "input width 32 differs from its output width 64",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, tiny_lm_dir, tiny_corpus_dir, overrides, error, message):
    with pytest.raises(error, match=message):
        train(tiny_config(tmp_path / "run", tiny_lm_dir, tiny_corpus_dir, **overrides))


def test_empty_corpus_is_refused(tmp_path, tiny_lm_dir):
    corpus = tmp_path / "empty"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"{i}.txt").write_text("  \n")
    with pytest.raises(CorpusError, match="empty"):
        train(tiny_config(tmp_path / "run", tiny_lm_dir, corpus))


def test_sae_applies_where_transcoders_cannot(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    manifest = train(tiny_config(tmp_path / "run", tiny_lm_dir, tiny_corpus_dir,
                                 architectures=["sae"], hookpoints=["layers.*.mlp.up_proj"]))
    assert manifest.config["hookpoints"] == ["layers.0.mlp.up_proj", "layers.1.mlp.up_proj"]
    assert set(manifest.architectures["sae"]["fvu"]) == set(manifest.config["hookpoints"])


def test_cli_reports_bad_input_in_one_line(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    from click.testing import CliRunner

    from transcoders.cli import main

    result = CliRunner().invoke(main, [
        "train", "--model", str(tiny_lm_dir), "--dataset", str(tiny_corpus_dir),
        "--hookpoints", "layers.9.mlp", "--out", str(tmp_path / "run"),
    ])
    assert result.exit_code == 1
    assert "Error: Hookpoint 'layers.9.mlp' matches no module" in result.output
    assert "Traceback" not in result.output


def test_replayed_activations_train_the_same_coders(tiny_run, tmp_path, tiny_lm_dir, tiny_corpus_dir):
    """Three architectures share one recorded forward; each alone uses the live
    truncated model. Both must give the same coder."""
    out, manifest = tiny_run
    assert manifest.architectures["transcoder"]["forward"] == "replay"
    alone = train(tiny_config(tmp_path / "alone", tiny_lm_dir, tiny_corpus_dir,
                              architectures=["transcoder"]))
    assert alone.architectures["transcoder"]["forward"] == "truncated"
    shared = load_file(out / "transcoder" / "layers.1.mlp" / "sae.safetensors")
    single = load_file(tmp_path / "alone" / "transcoder" / "layers.1.mlp" / "sae.safetensors")
    for name in shared:
        torch.testing.assert_close(shared[name], single[name], rtol=1e-5, atol=1e-6)


def test_unfinished_treats_a_missing_status_as_unknown(tiny_run, capsys):
    out, manifest = tiny_run
    names = [c.architecture.name for c in find(out)]
    assert manifest.unfinished(names) == []
    assert incomplete(None, find(out)) == []  # no manifest: a plain sparsify folder
    partial = Manifest(architectures={"sae": {"status": "complete"}, "transcoder": {}})
    assert partial.unfinished(names) == ["skip-transcoder", "transcoder"]

    warn_unfinished(Manifest(architectures={"sae": {"status": "training", "step": 3, "steps": 6}}), names)
    assert "training of 'sae' did not complete at step 3 of 6" in capsys.readouterr().err
    warn_unfinished(None, names)
    assert capsys.readouterr().err == ""


def test_autointerp_warns_about_unfinished_training(tiny_run, tmp_path, capsys):
    from transcoders.autointerp.pipeline import _manifest

    out, manifest = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    half = {**manifest.to_dict(), "architectures": {**manifest.architectures, "sae": {"status": "training"}}}
    (run / "manifest.json").write_text(json.dumps(half))
    assert _manifest(run, find(out)) == manifest.config
    assert "training of 'sae' did not complete" in capsys.readouterr().err
