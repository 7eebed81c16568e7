"""losses.estimators: the masked-count importance sampler has the expectation of the loss's own estimator.

References: scipy.stats (binomial tail, Beta quantile) and scipy quadrature over the loss's own time law of the
exact expectation over all masks (enumerated), for a fixed toy network; the estimator is checked to Monte-Carlo
error (four standard errors of independent replicates).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad

import ctmc
import losses
from losses.estimators import binomial_upper_tail, stratified_counts, truncated_beta_quantile

SCHEDULES = {"loglinear": ctmc.LogLinear(1e-3), "geometric": ctmc.Geometric(1e-3, 3.0)}


@pytest.mark.parametrize(("length", "p"), [(1, 0.3), (7, 0.999), (32, 0.5), (200, 0.02)])
def test_binomial_upper_tail_matches_scipy(length, p):
    counts = torch.arange(1, length + 1)
    ours = binomial_upper_tail(length, torch.tensor(p, dtype=torch.float64), counts).numpy()
    reference = stats.binom.sf(counts.numpy() - 1, length, p)
    np.testing.assert_allclose(ours, reference, rtol=1e-7, atol=1e-290)  # scipy: 4e-8 off at 1e-293, 0 below 1e-308
    big = reference > 1e-100
    np.testing.assert_allclose(ours[big], reference[big], rtol=1e-11)


@pytest.mark.parametrize(("length", "upper"), [(5, 0.999), (32, 0.999), (32, 0.4)])
def test_truncated_beta_quantile_matches_scipy(length, upper):
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(1, length + 1, (50,), generator=g)
    u = torch.rand(50, dtype=torch.float64, generator=g)
    ours = truncated_beta_quantile(u, counts, length, upper).numpy()
    a, b = counts.numpy(), length - counts.numpy() + 1
    reference = stats.beta.ppf(u.numpy() * stats.beta.cdf(upper, a, b), a, b)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-14)
    assert (ours > 0).all() and (ours <= upper).all()


@pytest.mark.parametrize(("draws", "length"), [(8, 32), (32, 8), (5, 3), (1, 4)])
def test_stratified_counts_cover_every_count_equally(draws, length):
    # Reference: the average over k of 1[m_k = m], integrated over the shared uniform on a fine grid, is 1/L.
    frequency = torch.zeros(length, dtype=torch.float64)
    grid = 4000
    for i in range(grid):
        g = torch.Generator().manual_seed(i)
        counts = stratified_counts(draws, length, g)
        assert counts.min() >= 1 and counts.max() <= length
        frequency += torch.bincount(counts - 1, minlength=length).double() / draws
    np.testing.assert_allclose(frequency.numpy() / grid, np.full(length, 1 / length), atol=0.03)
    if draws % length == 0:  # exactly draws / length of each count, for every shift
        counts = stratified_counts(draws, length, torch.Generator().manual_seed(1))
        assert torch.bincount(counts - 1, minlength=length).tolist() == [draws // length] * length


def test_count_weights_are_the_any_order_weights():
    # Reference: (L / m) P(Binomial(L, lambda_1) >= m) with scipy; lambda_1 = 1 - eps for LogLinear(eps).
    process = ctmc.ForwardProcess(ctmc.Absorbing(5), ctmc.LogLinear(1e-3))
    weights = losses.MaskedCountEstimator(process).count_weights(16).numpy()
    m = np.arange(1, 17)
    np.testing.assert_allclose(weights, 16 / m * stats.binom.sf(m - 1, 16, 1 - 1e-3), rtol=1e-12)


class ToyNetwork:
    """A fixed network on (x_t, t) for V clean tokens: a random table of logits per masked pattern and position.

    log_probs: a denoiser (RADD losses). log_score: RADD's score r(sigma-bar) p times e^{a t}, which is not the
    true score but keeps every term bounded as t -> 0 (score entropy needs s ~ r there).
    """

    def __init__(self, vocab: int, length: int, process: ctmc.ForwardProcess, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.process = vocab, process
        self.table = 2.0 * torch.randn(2**length, length, vocab, dtype=torch.float64, generator=g)
        self.powers = 2 ** torch.arange(length)

    def log_probs(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pattern = ((x_t == self.vocab).long() * self.powers).sum(-1)
        return torch.log_softmax(self.table[pattern], -1)

    def log_score(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        total = self.process.total(t.double())
        log_score = losses.denoiser_to_score(self.log_probs(x_t, t), x_t, total, log=True)
        return log_score + 0.7 * t.double()[:, None, None]


def _exact_expectation(loss, network_output, x0: torch.Tensor) -> float:
    """E_{t ~ loss's time law} E_{x_t | x0, t} loss, by quadrature over u ~ U(0, 1] and enumeration of masks."""
    length = x0.shape[1]
    mask = loss.process.rate_matrix.mask_index
    subsets = torch.tensor(list(itertools.product([0, 1], repeat=length)), dtype=torch.bool)
    x_t = torch.where(subsets, mask, x0.expand(len(subsets), length))
    counts = subsets.sum(-1).double()
    clean = x0.expand(len(subsets), length)

    def integrand(u: float) -> float:
        t = loss._time_from_uniform(torch.tensor([u], dtype=torch.float64)).expand(len(subsets))
        fraction = -torch.expm1(-loss.process.total(t))
        probability = fraction**counts * (1 - fraction) ** (length - counts)
        return float((probability * loss(network_output(x_t, t), clean, x_t, t)).sum())

    breaks = [1e-6, 1e-4, 1e-2, 0.1, 0.5]
    return quad(integrand, 0.0, 1.0, points=breaks, limit=400, epsabs=1e-11, epsrel=1e-10)[0]


@pytest.mark.parametrize(
    ("loss_class", "schedule"),
    [
        (losses.ScoreEntropy, "loglinear"),
        (losses.ScoreEntropy, "geometric"),
        (losses.TDCE, "loglinear"),
        (losses.LambdaDCE, "geometric"),
        (losses.MDLMNELBO, "geometric"),
    ],
)
def test_masked_count_estimator_has_the_loss_expectation(loss_class, schedule):
    # Reference: the exact expectation of today's estimator (quadrature over its time law, all 2^L masks).
    vocab, length = 3, 4
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), SCHEDULES[schedule])
    loss = loss_class(process)
    network = ToyNetwork(vocab, length, process)
    output = network.log_score if loss.output_kind == "log_score" else network.log_probs
    x0 = torch.tensor([[0, 2, 1, 2]])
    reference = _exact_expectation(loss, output, x0)

    estimator = losses.MaskedCountEstimator(process)
    g = torch.Generator().manual_seed(0)
    replicates, draws = 400, 2 * length
    counts = torch.cat([stratified_counts(draws, length, g) for _ in range(replicates)])
    draw = estimator.sample(x0.expand(len(counts), length), counts, loss.time_density, g)
    clean = x0.expand(len(counts), length)
    values = draw.weight * loss(output(draw.x_t, draw.t.double()), clean, draw.x_t, draw.t.double())
    means = values.reshape(replicates, draws).mean(1)
    estimate, se = float(means.mean()), float(means.std() / math.sqrt(replicates))
    assert se < 0.01 * reference  # the check below is tight enough to catch a wrong weight
    assert abs(estimate - reference) < 4 * se, (estimate, reference, se)


def test_time_independent_losses_give_the_any_order_form_exactly():
    # Reference: for a denoiser, weight * loss = (L F_m / m) sum_{masked} -log p for every t (closed form).
    vocab, length = 3, 4
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.Geometric(1e-3, 3.0))
    estimator = losses.MaskedCountEstimator(process)
    network = ToyNetwork(vocab, length, process)
    x0 = torch.tensor([[1, 0, 2, 2]])
    g = torch.Generator().manual_seed(3)
    counts = torch.arange(1, length + 1).repeat(20)
    clean = x0.expand(len(counts), length)
    expected = None
    for loss in (losses.TDCE(process), losses.LambdaDCE(process), losses.MDLMNELBO(process)):
        draw = estimator.sample(clean, counts, loss.time_density, g)
        log_probs = network.log_probs(draw.x_t, draw.t)
        values = draw.weight * loss(log_probs, clean, draw.x_t, draw.t.double())
        masked = draw.x_t == vocab
        cross_entropy = torch.where(masked, -log_probs.gather(-1, clean[..., None]).squeeze(-1), 0.0).sum(-1)
        expected = estimator.count_weights(length)[counts - 1] * cross_entropy
        torch.testing.assert_close(values, expected, rtol=1e-6, atol=0.0)
        assert torch.equal(masked.sum(-1), counts)


def test_estimator_rejects_other_chains_and_bad_counts():
    with pytest.raises(TypeError, match="absorbing"):
        losses.MaskedCountEstimator(ctmc.ForwardProcess(ctmc.Uniform(4), ctmc.LogLinear()))
    estimator = losses.MaskedCountEstimator(ctmc.ForwardProcess(ctmc.Absorbing(4), ctmc.LogLinear()))
    x0 = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="counts"):
        estimator.sample(x0, torch.tensor([0, 1]), lambda t: torch.ones_like(t))
    with pytest.raises(ValueError, match="counts"):
        estimator.sample(x0, torch.tensor([1, 4]), lambda t: torch.ones_like(t))


def test_time_density_integrates_to_one_and_matches_the_sampler():
    # Reference: quadrature of p(t), and the histogram-free check P(t <= s) = int_0^s p for LambdaDCE.
    process = ctmc.ForwardProcess(ctmc.Absorbing(4), ctmc.Geometric(1e-3, 3.0))
    loss = losses.LambdaDCE(process)

    def density(s: float) -> float:
        return float(loss.time_density(torch.tensor([s], dtype=torch.float64)))

    assert quad(density, 0.0, 1.0)[0] == pytest.approx(1.0, rel=1e-8)
    u = torch.linspace(0.01, 1.0, 7, dtype=torch.float64)
    times = loss._time_from_uniform(u)
    for probability, s in zip(u.tolist(), times.tolist(), strict=True):
        assert quad(density, 0.0, s)[0] == pytest.approx(probability, rel=1e-7)
    uniform = losses.ScoreEntropy(process).time_density(times)
    assert torch.equal(uniform, torch.ones_like(times))
