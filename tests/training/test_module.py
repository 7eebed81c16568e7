"""Unit tests of the training pieces against independent references (closed forms, manual recursions)."""

from __future__ import annotations

import math

import torch

import ctmc
import losses
import models
from evaluation.bounds import sequence_negative_elbo
from training.ema import frozen_copy, update_average
from training.lr_schedule import warmup_decay


def test_warmup_cosine_matches_closed_form():
    # reference: the formula written out by hand at a few steps
    assert warmup_decay(0, 10, 110, "cosine", 0.0) == 0.1
    assert warmup_decay(9, 10, 110, "cosine", 0.0) == 1.0
    assert math.isclose(warmup_decay(60, 10, 110, "cosine", 0.0), 0.5, abs_tol=1e-12)
    assert math.isclose(warmup_decay(110, 10, 110, "cosine", 0.1), 0.1, abs_tol=1e-12)
    assert math.isclose(warmup_decay(35, 10, 110, "linear", 0.0), 0.75, abs_tol=1e-12)
    assert warmup_decay(500, 10, 110, "constant", 0.0) == 1.0


def test_ema_matches_manual_recursion():
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2).double()
    average = frozen_copy(network)
    reference = [p.detach().clone() for p in network.parameters()]
    for _ in range(3):
        with torch.no_grad():
            for p in network.parameters():
                p.add_(torch.randn_like(p))
        update_average(average, network, 0.9)
        reference = [0.9 * r + 0.1 * p.detach() for r, p in zip(reference, network.parameters(), strict=True)]
    for a, r in zip(average.parameters(), reference, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_negative_elbo_does_not_depend_on_batching():
    # reference: the same sequences evaluated one at a time and in reversed order
    torch.manual_seed(0)
    vocab = 11
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    network = models.DiT(vocab + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=8,
                         absorbing_parameterization=True).double()
    x0 = torch.randint(0, vocab, (4, 8))
    with torch.no_grad():
        together = sequence_negative_elbo(loss, network, x0, 3, seed=5)
        reversed_ = sequence_negative_elbo(loss, network, x0.flip(0), 3, seed=5)
        single = torch.cat([sequence_negative_elbo(loss, network, x0[i : i + 1], 3, 5)
                            for i in range(4)])
    assert together.shape == (4, 3)
    torch.testing.assert_close(together, reversed_.flip(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(together, single, rtol=1e-6, atol=1e-6)
