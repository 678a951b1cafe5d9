"""The metric math on hand-made numbers."""

from __future__ import annotations

import math

import pytest
import torch

from transcoders.evaluation import metrics


def test_fvu_is_pooled_over_batches():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(100, 5, generator=gen) * torch.arange(1, 6) + 3
    pred = y + 0.5 * torch.randn(100, 5, generator=gen)
    acc = metrics.Reconstruction()
    for p, t in zip(pred.split(7), y.split(7)):
        acc.add(p, t)

    yn, pn = y.double().numpy(), pred.double().numpy()
    expected = ((yn - pn) ** 2).sum() / ((yn - yn.mean(0)) ** 2).sum()
    assert acc.fvu == pytest.approx(expected, rel=1e-10)


def test_fvu_known_answers():
    y = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    perfect, mean = metrics.Reconstruction(), metrics.Reconstruction()
    perfect.add(y, y)
    mean.add(y.mean(0).expand_as(y), y)
    assert perfect.fvu == 0
    assert mean.fvu == pytest.approx(1)
    # Total variance: (1 + 1) + (4 + 4) = 10; errors of predicting zeros: 1+4+9+36.
    zero = metrics.Reconstruction()
    zero.add(torch.zeros_like(y), y)
    assert zero.fvu == pytest.approx(50 / 10)


def test_latent_counts_skip_zero_activations():
    lat = metrics.Latents(num_latents=6)
    acts = torch.tensor([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0]])
    idx = torch.tensor([[0, 3, 4], [0, 1, 2]])
    lat.add(acts, idx)
    assert lat.l0 == 3 / 2  # 2 + 1 active latents over 2 tokens
    assert lat.fired.tolist() == [2, 0, 0, 1, 0, 0]
    assert lat.dead_fraction == 4 / 6


def test_firing_histogram_bins():
    # 1000 tokens: frequencies 0.002, 0.02, 0.5, 1 and two dead latents.
    fired = torch.tensor([2, 20, 500, 1000, 0, 0])
    hist = metrics.firing_histogram(fired, tokens=1000)
    assert metrics.HISTOGRAM_BINS_PER_DECADE == 2
    assert hist["bin_edges"] == pytest.approx(
        [1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1, 10**-0.5, 1]
    )
    # The last bin [10^-0.5, 1] includes 1.
    assert hist["counts"] == [1, 0, 1, 0, 0, 2]
    assert hist["dead"] == 2


def test_next_token_nll_of_uniform_logits_is_log_vocab():
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    nll = metrics.next_token_nll(torch.zeros(1, 5, 10), ids)
    assert nll.shape == (1, 4)
    assert torch.allclose(nll, torch.full((1, 4), math.log(10)))


def test_next_token_kl_known_value():
    p = torch.tensor([0.75, 0.25])
    q = torch.tensor([0.5, 0.5])
    clean = p.log().expand(1, 3, 2)
    other = q.log().expand(1, 3, 2)
    kl = metrics.next_token_kl(clean, other)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl.shape == (1, 2)
    assert torch.allclose(kl, torch.full((1, 2), expected))
    same = metrics.next_token_kl(clean, clean)
    assert torch.allclose(same, torch.zeros(1, 2), atol=1e-6)


def test_loss_recovered():
    assert metrics.loss_recovered(2.0, 2.0, 4.0) == 1
    assert metrics.loss_recovered(2.0, 4.0, 4.0) == 0
    assert metrics.loss_recovered(2.0, 3.5, 4.0) == 0.25
    assert math.isnan(metrics.loss_recovered(2.0, 3.0, 2.0))
