"""The autointerp pipeline end to end on a tiny random model: layout, resume,
malformed LLM output, endpoint failure, bad run directories."""

import json
import socket

import orjson
import pytest
from tiny_autointerp import HOOKPOINTS, tiny_options, tiny_run, tiny_world

from transcoders.autointerp import models, pipeline
from transcoders.autointerp.clients import HTTPClient
from transcoders.autointerp.config import AutointerpConfig
from transcoders.validation import ConfigError

ARCHS = ("sae", "transcoder")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A saved tiny model + tokenizer, a folder of text in its vocabulary, a run."""
    root = tmp_path_factory.mktemp("pipeline")
    return root, tiny_world(root)


def config(world, out, **kw) -> AutointerpConfig:
    return AutointerpConfig(**tiny_options(world[0], out, **kw))


def test_offline_run_writes_delphis_layout_and_resumes(world, tmp_path, monkeypatch):
    _, run = world
    cfg = config(world, tmp_path / "out", explainer="top-tokens", scorers=["embedding"])
    summary = pipeline.run_autointerp(run, cfg)

    for arch in ARCHS:
        folder = tmp_path / "out" / arch
        explanations = sorted((folder / "explanations").glob("*.txt"))
        assert len(explanations) == 6
        assert all(p.name.startswith("layers.1.mlp_latent") for p in explanations)
        assert json.loads(explanations[0].read_text()).startswith("The tokens ")
        for sub in ("embedding", "embedding_shuffled"):
            scores = sorted((folder / "scores" / sub).glob("*.txt"))
            assert [p.name for p in scores] == [p.name for p in explanations]
            score = orjson.loads(scores[0].read_bytes())
            # 5 non-activating + up to 5 activating (those the explainer saw are left out)
            assert 5 < len(score) <= 10 and {"similarity", "distance"} <= score[0].keys()
        donors = json.loads((folder / "shuffled_donors.json").read_text())
        assert len(donors) == 6 and all(k != v for k, v in donors.items())
        assert sorted(donors.values()) == sorted(donors)

    groups = {g["architecture"]: g for g in summary["groups"]}
    assert set(groups) == set(ARCHS)
    for g in groups.values():
        assert g["latents"] == 6 and g["auroc_low"] <= g["auroc"] <= g["auroc_high"]
        assert g["shuffled_auroc"] is not None
    assert len(summary["comparisons"]) == 1
    assert (tmp_path / "out" / "summary.csv").exists() and (tmp_path / "out" / "latents.csv").exists()

    # A rerun explains and scores nothing: every latent is already on disk.
    async def boom(*args, **kwargs):
        raise AssertionError("finished latent redone")

    monkeypatch.setattr(models.TopTokensExplainer, "__call__", boom)
    monkeypatch.setattr(models.EmbeddingScorer, "__call__", boom)
    again = pipeline.run_autointerp(run, cfg)
    assert again["groups"] == summary["groups"]

    # The CLI prints each group with its control and warns where they do not separate.
    from click.testing import CliRunner

    from transcoders.autointerp.summary import control_warnings
    from transcoders.cli import main

    monkeypatch.setattr(pipeline, "run_autointerp", lambda run_dir, cfg: summary)
    printed = CliRunner().invoke(main, ["autointerp", str(run), "--out", str(tmp_path / "out")])
    assert printed.exit_code == 0, printed.output
    assert printed.output.count("  real − shuffled ") == len(summary["groups"])
    assert printed.output.count("Warning:") == len(control_warnings(summary))


def test_a_deleted_latent_is_redone_alone(world, tmp_path, monkeypatch):
    _, run = world
    cfg = config(world, tmp_path / "out", explainer="top-tokens", scorers=["embedding"], architectures=["sae"])
    pipeline.run_autointerp(run, cfg)
    victim = sorted((tmp_path / "out" / "sae" / "scores" / "embedding").glob("*.txt"))[2]
    victim.unlink()
    calls = []
    real = models.EmbeddingScorer.__call__

    async def counting(self, record):
        calls.append(str(record.latent))
        return await real(self, record)

    monkeypatch.setattr(models.EmbeddingScorer, "__call__", counting)
    pipeline.run_autointerp(run, cfg)
    assert calls == [victim.stem]


def test_two_hookpoints_keep_each_others_controls(world, tmp_path, monkeypatch):
    """shuffled_donors.json is per architecture: writing one hookpoint's pairing must
    not drop another's, or every rerun rescores that hookpoint's controls."""
    run = tiny_run(tmp_path / "run", archs=("sae",), hookpoints=HOOKPOINTS, num_latents=32)
    cfg = config(world, tmp_path / "out", explainer="top-tokens", scorers=["embedding"], latents=3)
    first = pipeline.run_autointerp(run, cfg)
    assert len(json.loads((tmp_path / "out" / "sae" / "shuffled_donors.json").read_text())) == 6
    assert len(list((tmp_path / "out" / "sae" / "scores" / "embedding_shuffled").glob("*.txt"))) == 6

    async def boom(*args, **kwargs):
        raise AssertionError("finished latent rescored")

    monkeypatch.setattr(models.EmbeddingScorer, "__call__", boom)
    assert pipeline.run_autointerp(run, cfg)["groups"] == first["groups"]


def test_malformed_llm_output_is_counted_not_scored(world, tmp_path):
    """A tiny random LM writes gibberish: every explanation is a failed parse, which
    stops the run past --max-unparsed and is otherwise counted, not saved and not
    scored; as a judge its answers are unparsed predictions, counted per group."""
    root, run = world
    local = f"local:{root / 'model'}"
    cfg = config(world, tmp_path / "a", explainer=local, scorers=["embedding"], architectures=["sae"], latents=3)
    with pytest.raises(pipeline.AutointerpError, match="3 of 3 explanations could not be parsed"):
        pipeline.run_autointerp(run, cfg)
    cfg.max_unparsed = 1.0
    summary = pipeline.run_autointerp(run, cfg)
    assert summary["failed_explanations"] == [
        {"architecture": "sae", "hookpoint": "layers.1.mlp", "explained": 3, "failed_parse": 3}
    ]
    assert summary["groups"] == []
    assert not list((tmp_path / "a" / "sae" / "explanations").glob("*.txt"))
    assert not (tmp_path / "a" / "sae" / "scores").exists()

    cfg = config(world, tmp_path / "b", explainer="top-tokens", scorers=["detection"],
                 scorer_model=local, architectures=["sae"], latents=2)
    summary = pipeline.run_autointerp(run, cfg)
    (group,) = summary["groups"]
    # Every example of both latents was sent to the judge; none came back parsed.
    assert group["predictions"] > 2 * 5 and group["failed_predictions"] == group["predictions"]
    assert group["balanced_accuracy"] is None


def test_endpoint_failure_stops_with_a_clear_error_and_keeps_finished_work(world, tmp_path, monkeypatch):
    _, run = world
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(
        "transcoders.autointerp.clients.make_client",
        lambda spec, **kw: HTTPClient("m", f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.01),
    )
    cfg = config(world, tmp_path / "out", explainer="top-tokens", scorers=["detection"],
                 scorer_model="http://unused", architectures=["sae"], latents=3)
    with pytest.raises(pipeline.AutointerpError, match="detection judge failed.*rerun"):
        pipeline.run_autointerp(run, cfg)
    # Explanations finished before the judge failed are kept; nothing was scored.
    assert len(list((tmp_path / "out" / "sae" / "explanations").glob("*.txt"))) == 3
    assert not list((tmp_path / "out" / "sae" / "scores" / "detection").glob("*.txt"))


def test_other_settings_never_mix_with_finished_results(world, tmp_path):
    _, run = world
    cfg = config(world, tmp_path / "out", explainer="top-tokens", scorers=["embedding"], architectures=["sae"], latents=2)
    pipeline.run_autointerp(run, cfg)
    other = config(world, tmp_path / "out", explainer="local:x", scorers=["embedding"], architectures=["sae"])
    with pytest.raises(pipeline.AutointerpError, match="other settings .*explainer"):
        pipeline.run_autointerp(run, other)


def test_run_dir_without_checkpoints(tmp_path):
    with pytest.raises(pipeline.AutointerpError, match="No checkpoints"):
        pipeline.run_autointerp(tmp_path, AutointerpConfig())


def test_explainer_that_cannot_be_loaded(world, tmp_path):
    cfg = config(world, tmp_path / "out", explainer=f"local:{tmp_path / 'no-such-model'}")
    with pytest.raises(pipeline.AutointerpError, match="Could not load the client 'local:"):
        pipeline.run_autointerp(world[1], cfg)
    assert not (tmp_path / "out" / "sae").exists()  # failed before caching anything


def test_unknown_scorer():
    with pytest.raises(ConfigError, match="--scorers: unknown scorer 'simulation'"):
        AutointerpConfig(scorers=["simulation"])


@pytest.mark.integration
def test_embedded_run_end_to_end(embedded_run, tmp_path):
    """The offline default on the embedded model: SAE and transcoder latents cached
    from their own sites, explained by top tokens, scored by MiniLM with a control."""
    cfg = AutointerpConfig(
        out=str(tmp_path / "out"), latents=4, n_tokens=4096, ctx_len=64, n_boot=500,
        min_examples=10, n_examples_train=10, n_examples_test=10, n_non_activating=10,
    )
    summary = pipeline.run_autointerp(embedded_run, cfg)
    groups = {g["architecture"]: g for g in summary["groups"]}
    assert set(groups) == {"sae", "transcoder", "skip-transcoder"}
    for arch, g in groups.items():
        assert g["latents"] == 4 and g["scorer"] == "embedding"
        assert g["auroc"] is not None and g["shuffled_auroc"] is not None
        assert len(list((tmp_path / "out" / arch / "scores" / "embedding").glob("*.txt"))) == 4
    assert {(c["a"], c["b"]) for c in summary["comparisons"]} == {
        ("sae", "transcoder"), ("sae", "skip-transcoder"), ("skip-transcoder", "transcoder")
    }


def test_latents_need_examples_beyond_the_explainers(tmp_path):
    """A latent whose every activating window goes to the explainer would be scored
    on non-activating examples alone, so it must not be sampled."""
    import numpy as np
    from safetensors.numpy import save_file

    from transcoders.autointerp.config import AutointerpConfig
    from transcoders.autointerp.sampling import latent_counts

    cfg = AutointerpConfig(
        example_ctx_len=8, n_examples_train=4, min_examples=3, n_examples_test=3, n_quantiles=3,
        n_non_activating=2,
    )
    tokens = np.zeros((8, 16), dtype=np.int64)  # 16 windows of 8 tokens
    locations = []
    for latent, n_windows in ((0, 4), (1, 6), (2, 7)):
        locations += [(w // 2, (w % 2) * 8, latent) for w in range(n_windows)]
    locations = np.array(locations, dtype=np.uint32)
    save_file(
        {"locations": locations, "activations": np.ones(len(locations), dtype=np.float16),
         "tokens": tokens},
        str(tmp_path / "0_3.safetensors"),  # latent 3 never fires
    )
    counts = latent_counts(tmp_path, cfg)
    assert counts.live == 3 and counts.tokens == 128 and counts.dead_fraction == 0.25
    assert counts.firing.tolist() == [4, 6, 7, 0]
    assert counts.eligible.tolist() == [2]
