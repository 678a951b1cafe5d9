"""How scoring examples are chosen, and the statistics that keep firing frequency from
confounding the architecture comparison."""

import re

import numpy as np
import pytest
import torch
from tiny_autointerp import tiny_options, tiny_world

from transcoders.autointerp import models, pipeline, sampling, scores, settings, stats
from transcoders.autointerp.config import AutointerpConfig
from transcoders.autointerp.delphi_compat import held_out_test
from transcoders.validation import ConfigError

from delphi.clients.client import Client, Response  # noqa: E402  (after pipeline's import_delphi)
from delphi.latents import ActivatingExample, Latent, LatentRecord  # noqa: E402


class _Words:
    def batch_decode(self, ids):
        return [f"w{int(i)}" for i in ids]


def _record(n_examples: int) -> LatentRecord:
    """Examples sorted by peak activation as Delphi's constructor leaves them; example i
    has tokens [i, i] and peak n_examples - i."""
    examples = [
        ActivatingExample(tokens=torch.tensor([i, i]), activations=torch.tensor([0.0, float(n_examples - i)]))
        for i in range(n_examples)
    ]
    return LatentRecord(Latent("m", 0), examples=examples)


@pytest.mark.parametrize("n_examples", [12, 40, 200])
def test_test_examples_are_held_out_fixed_in_number_and_span_every_quantile(n_examples):
    """The explainer's top 10 are never scored; every latent, rare or frequent, gets
    exactly 10 test examples, 2 from each fifth of the examples the explainer did not
    see (the old overlap-dropping left a rare latent only its lower quantiles)."""
    n_train, n_test, n_q = 10, 10, 5
    n_examples = max(n_examples, n_train + n_test)
    record = _record(n_examples)
    record.train = record.examples[:n_train]
    record = held_out_test(record, n_train, n_test, n_q, _Words())
    shown = {ex.tokens[0].item() for ex in record.train}
    drawn = [ex.tokens[0].item() for ex in record.test]
    assert len(drawn) == n_test and len(set(drawn)) == n_test
    assert not shown & set(drawn)
    pool = n_examples - n_train
    size = pool // n_q
    for q in range(n_q):
        in_q = [i for i in drawn if n_train + q * size <= i < n_train + (q + 1) * size]
        assert len(in_q) == n_test // n_q, (q, drawn)
    assert sorted(ex.quantile for ex in record.test) == sorted(list(range(n_q)) * (n_test // n_q))
    assert all(ex.str_tokens for ex in record.test)


def test_config_refuses_uneven_quantiles_and_short_prompts():
    with pytest.raises(ConfigError, match="--test-examples .* multiple of --n-quantiles"):
        AutointerpConfig(n_examples_test=25, n_quantiles=10)
    with pytest.raises(ConfigError, match="--examples-per-prompt"):
        AutointerpConfig(scorers=["detection"], n_examples_test=20, n_non_activating=22)
    AutointerpConfig(scorers=["embedding"], n_examples_test=20, n_non_activating=22)


class _CountingJudge(Client):
    """Answers every prompt with one verdict per example it lists, as a judge that
    read the prompt would; Delphi's parser rejects answers of another length."""

    def __init__(self):
        super().__init__("counting")
        self.sizes = []

    async def generate(self, prompt, **kwargs):
        n = len(re.findall(r"^Example \d+:", prompt[-1]["content"], re.M))
        self.sizes.append(n)
        return Response(text=str([1] * n))


def test_every_judge_prompt_is_full_and_parses(tmp_path):
    """Records as the pipeline builds them, scored by Delphi's detection and fuzzing
    scorers: every prompt holds examples_per_prompt examples, so none is unparsed."""
    root = tmp_path / "w"
    root.mkdir()
    run = tiny_world(root)
    cfg = AutointerpConfig(**tiny_options(
        root, tmp_path / "out", scorers=["detection"], n_examples_test=6, n_non_activating=4,
        n_quantiles=2, examples_per_prompt=5, architectures=["sae"],
    ))
    ckpt = pipeline.checkpoints.find(run)[0]
    tokenizer = sampling.load_tokenizer(cfg.model)
    pipeline._cache([ckpt], tmp_path / "out", cfg, cfg.model, cfg.dataset, cfg.cache_config(cfg.model, cfg.dataset))
    counts = sampling.latent_counts(pipeline.cache.latents_dir(tmp_path / "out", "sae") / ckpt.hookpoint, cfg)
    records = sampling.latent_records(ckpt, tmp_path / "out", cfg, tokenizer, counts.eligible[:3])
    assert len(records) == 3
    for kind in (models.DetectionScorer, models.FuzzingScorer):
        judge = _CountingJudge()
        scorer = kind(judge, n_examples_shown=5, log_prob=False)
        for record in records:
            assert len(record.test) == 6
            shown = {tuple(e.tokens.tolist()) for e in record.train}
            assert not shown & {tuple(e.tokens.tolist()) for e in record.test}
            record.explanation = "anything"
            result = scorer.call_sync(record)
            assert scores.latent_metrics("detection", [
                {"activating": s.activating, "prediction": s.prediction, "probability": s.probability}
                for s in result.score
            ])["n_failed"] == 0
        assert set(judge.sizes) == {5}


def test_frequency_matching_removes_a_frequency_confound():
    """Five frequency levels of 40 latents each; the score rises with the level alone,
    and A has more frequent latents than B: the raw difference is large, the matched
    one is exactly zero; a true effect of +0.1 for A is recovered."""
    rng = np.random.default_rng(0)
    a_counts, b_counts = [5, 10, 20, 30, 35], [35, 30, 20, 10, 5]

    def latents(counts):
        level = np.repeat(np.arange(5), counts)
        return level, 10.0 ** (level - 5) * rng.uniform(1, 2, len(level))

    (la, fa), (lb, fb) = latents(a_counts), latents(b_counts)
    sa, sb = 0.5 + 0.1 * la, 0.5 + 0.1 * lb
    raw = stats.bootstrap_difference(sa.tolist(), sb.tolist(), n_boot=500)
    assert raw.value == pytest.approx(0.16) and raw.low > 0.1
    m = stats.frequency_matched_difference(sa.tolist(), fa.tolist(), sb.tolist(), fb.tolist(), n_boot=500)
    assert (m.value, m.low, m.high) == pytest.approx((0, 0, 0), abs=1e-12)
    assert m.coverage == 1.0 and m.bins == stats.FREQUENCY_BINS
    noisy_a = sa + 0.1 + rng.normal(0, 0.05, 100)
    noisy_b = sb + rng.normal(0, 0.05, 100)
    m = stats.frequency_matched_difference(noisy_a.tolist(), fa.tolist(), noisy_b.tolist(), fb.tolist(), n_boot=500)
    assert m.low < 0.1 < m.high and m.low > 0.05
    raw = stats.bootstrap_difference(noisy_a.tolist(), noisy_b.tolist(), n_boot=500)
    assert raw.low > 0.2


def test_frequency_matching_leaves_out_bins_one_group_lacks():
    """Frequencies that do not overlap cannot be matched: no bin, no number."""
    a = stats.frequency_matched_difference([1.0] * 10, [0.5] * 10, [0.0] * 10, [0.001] * 10, n_boot=50)
    assert a is None
    b = stats.frequency_matched_difference(
        [1.0] * 10 + [0.5] * 10, [0.5] * 10 + [0.01] * 10, [0.0] * 10, [0.01] * 10, n_boot=50
    )
    assert b.value == pytest.approx(0.5) and b.coverage == pytest.approx(20 / 30)


def test_spearman():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, None], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert stats.spearman([1, 1, 1], [1, 2, 3]) is None


def test_results_made_with_the_old_test_sampling_are_not_resumed(tmp_path):
    """An output folder written before test examples were held out has no
    `test_sampling` in its settings: its scores are refused, not mixed in."""
    import json

    cfg = AutointerpConfig(out=str(tmp_path))
    written = settings.check_same_settings(tmp_path, cfg, "m", "d")
    old = {k: v for k, v in written.items() if k != "test_sampling"}
    (tmp_path / settings.SETTINGS_FILE).write_text(json.dumps(old))
    with pytest.raises(pipeline.AutointerpError, match="test_sampling differ"):
        settings.check_same_settings(tmp_path, cfg, "m", "d")
