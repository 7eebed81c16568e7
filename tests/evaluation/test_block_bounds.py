"""The seeded noise path of training and evaluation (evaluation/bounds.py) with losses.BlockDiffusionLoss and
models.BlockDenoiser, in float64, and the draw methods every other loss inherits.

References: the bound enumerated over every masked subset of every block, with the mask-rate integral from
scipy.special.betainc (both estimators must average to it); block size 1, where the masked-count estimate is
exactly lambda_1 times the autoregressive NLL (a loop over prefixes); the draws written out with the process
and the loss's sample_time (the code before the draw methods existed), bit for bit, for the other losses.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.special import beta as beta_function
from scipy.special import betainc

import ctmc
import losses
import models
from evaluation.bounds import seeded_count_noise, seeded_noise, sequence_negative_elbo
from evaluation.seeding import content_seeds, seeded_generator

VOCAB, MASK, EPS = 4, 4, 1e-3  # LogLinear(EPS): lambda_1 = 1 - EPS


def _process() -> ctmc.ForwardProcess:
    return ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(EPS))


def _network(block_size: int) -> models.BlockDenoiser:
    torch.manual_seed(0)
    network = models.BlockDenoiser(VOCAB, 16, 1, 2, 8, local_mixing=3, block_size=block_size).double().eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return network


@torch.no_grad()
def _enumerated_bound(network: models.BlockDenoiser, x0: torch.Tensor, block_size: int) -> float:
    """sum over blocks b and masked subsets A of block b of I(|A|) sum_{i in A} -log p(x0_i | x0^{<b}, block with A
    masked), I(m) = int_0^{lambda_1} lambda^{m-1} (1 - lambda)^{S-m} d lambda (regularised betainc times B)."""
    total = 0.0
    for start in range(0, x0.shape[0], block_size):
        for size in range(1, block_size + 1):
            integral = betainc(size, block_size - size + 1, 1 - EPS) * beta_function(size, block_size - size + 1)
            for subset in itertools.combinations(range(block_size), size):
                noisy = x0[start : start + block_size].clone()
                noisy[list(subset)] = MASK
                log_probs = network(torch.cat([x0[:start], noisy])[None])[0, start:]
                total += integral * float(-sum(log_probs[i, x0[start + i]] for i in subset))
    return total


@torch.no_grad()
def test_both_estimators_average_to_the_enumerated_bound_and_a_clipped_loss_reports_the_full_one():
    """4,000 seeded draws of one sequence (L = 4, two blocks of 2) through sequence_negative_elbo: the means are
    within 5 standard errors (iid formula; conservative for stratified draws) of the enumeration."""
    network, loss = _network(2), losses.BlockDiffusionLoss(_process(), 2)
    x0 = torch.tensor([[1, 3, 0, 2]])
    exact = _enumerated_bound(network, x0[0], 2)
    draws = 4000
    for estimator in (None, losses.MaskedCountEstimator(_process())):
        values = sequence_negative_elbo(loss, network, x0, draws, seed=3, estimator=estimator)[0].double()
        error, standard_error = float(values.mean()) - exact, float(values.std()) / math.sqrt(draws)
        assert abs(error) < 5 * standard_error, (estimator, error, standard_error)
    clipped = losses.BlockDiffusionLoss(_process(), 2, clip=(0.3, 0.8))
    for estimator in (None, losses.MaskedCountEstimator(_process())):
        full = sequence_negative_elbo(loss, network, x0, 16, seed=4, estimator=estimator)
        assert torch.equal(sequence_negative_elbo(clipped, network, x0, 16, seed=4, estimator=estimator), full)


@torch.no_grad()
def test_block_size_one_counts_give_lambda_1_times_the_autoregressive_nll():
    network, loss = _network(1), losses.BlockDiffusionLoss(_process(), 1)
    x0 = torch.tensor([[1, 3, 0, 2], [2, 2, 1, 0]])
    values = sequence_negative_elbo(loss, network, x0, 3, seed=0, estimator=losses.MaskedCountEstimator(_process()))
    nll = torch.zeros(2, dtype=torch.float64)
    for position in range(4):
        x = torch.cat([x0[:, :position], torch.full((2, 1), MASK)], 1)
        nll -= network(x)[:, position].gather(-1, x0[:, position, None]).squeeze(-1)
    torch.testing.assert_close(values, ((1 - EPS) * nll)[:, None].expand(2, 3), rtol=1e-12, atol=0)


@torch.no_grad()
def test_block_draws_are_per_block_seeded_by_content_and_independent_of_batching():
    network, loss = _network(2), losses.BlockDiffusionLoss(_process(), 2)
    estimator = losses.MaskedCountEstimator(_process())
    x0 = torch.randint(0, VOCAB, (5, 4), generator=torch.Generator().manual_seed(0))
    t, x_t = seeded_noise(loss, x0, 3, True, 7)
    assert t.shape == (15, 2) and x_t.shape == (15, 4) and bool((t[:, 0] != t[:, 1]).all())
    again_t, again_x = seeded_noise(loss, x0.flip(0), 3, True, 7)
    flip = torch.arange(15).reshape(5, 3).flip(0).reshape(-1)
    assert torch.equal(t, again_t[flip]) and torch.equal(x_t, again_x[flip])
    draw = seeded_count_noise(loss, estimator, x0, 1, True, 7, 1)  # training: counts stratified over the rows' blocks
    counts = (draw.x_t == MASK).reshape(5, 2, 2).sum(-1)
    assert draw.weight.shape == (5, 2) and sorted(counts.flatten().tolist()) == [1] * 5 + [2] * 5
    for estimator_or_none in (None, estimator):
        together = sequence_negative_elbo(loss, network, x0, 3, 5, estimator_or_none)
        single = torch.cat([sequence_negative_elbo(loss, network, x0[i : i + 1], 3, 5, estimator_or_none)
                            for i in range(5)])
        torch.testing.assert_close(together, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss_class", [losses.ScoreEntropy, losses.LambdaDCE, losses.MDLMNELBO])
def test_default_draws_are_the_process_draws_at_sample_time_bit_for_bit(loss_class):
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    loss, estimator = loss_class(process), losses.MaskedCountEstimator(process)
    x0 = torch.randint(0, VOCAB, (4, 6), generator=torch.Generator().manual_seed(2))
    t, x_t = seeded_noise(loss, x0, 3, True, 9)
    expected_t, expected_x = [], []
    for row, seed in zip(x0, content_seeds(x0), strict=True):  # the draws written out
        times = loss.sample_time(3, generator=seeded_generator("cpu", 9, seed), antithetic=True)
        expected_t.append(times)
        noise = seeded_generator("cpu", 9, seed, 1)
        expected_x.append(process.sample(row.expand(3, 6), times[:, None], generator=noise))
    assert torch.equal(t, torch.cat(expected_t)) and torch.equal(x_t, torch.cat(expected_x))
    draw = seeded_count_noise(loss, estimator, x0, 2, False, 9)
    expected = []
    for row, seed in zip(x0, content_seeds(x0), strict=True):
        generator = seeded_generator("cpu", 9, seed)
        counts = losses.stratified_counts(2, 6, generator)
        expected.append(estimator.sample(row.expand(2, 6), counts, loss.time_density, generator))
    assert torch.equal(draw.x_t, torch.cat([e.x_t for e in expected]))
    assert torch.equal(draw.weight, torch.cat([e.weight for e in expected]))
    output = torch.log_softmax(torch.randn(8, 6, loss.output_width, dtype=torch.float64), -1)
    if loss.output_kind == "log_score":
        output = torch.randn(8, 6, loss.output_width, dtype=torch.float64)
    clean = x0.repeat_interleave(2, 0)
    weighted = loss.importance_weighted(output, clean, draw, torch.float64)
    assert torch.equal(weighted, draw.weight * loss(output, clean, draw.x_t, draw.t).double())
    assert loss.bound() is loss
