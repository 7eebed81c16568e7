"""RADD/MDLM losses: the RADD identity with score entropy, the conversions, and each estimator's expectation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from losses_brute_force import (
    all_sequences,
    exact_scores,
    sequence_index,
    sequence_transition,
    toy_data,
)
from scipy.integrate import quad

import ctmc
import losses

SCHEDULES = {"loglinear": ctmc.LogLinear(1e-3), "geometric": ctmc.Geometric(1e-3, 8.0)}


def _batch(vocab, seed, batch=4, length=5, schedule="geometric"):
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), SCHEDULES[schedule])
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, vocab, (batch, length), generator=g)
    t = torch.rand(batch, dtype=torch.float64, generator=g) * 0.999 + 0.001
    x_t = process.sample(x0, t[:, None], generator=g)
    return process, x0, x_t, t, g


@given(vocab=st.integers(2, 6), seed=st.integers(0, 10_000), schedule=st.sampled_from(sorted(SCHEDULES)))
def test_radd_identity_score_entropy_equals_tdce_plus_constant(vocab, seed, schedule):
    # Reference: ScoreEntropy (the SEDD formula, checked against scipy elsewhere) evaluated at the RADD score.
    process, x0, x_t, t, g = _batch(vocab, seed, schedule=schedule)
    dse, tdce = losses.ScoreEntropy(process), losses.TDCE(process)
    differences = []
    for _ in range(2):  # two unrelated "networks"
        log_probs = torch.log_softmax(3 * torch.randn(*x0.shape, vocab, dtype=torch.float64, generator=g), -1)
        log_score = losses.denoiser_to_score(log_probs, x_t, process.total(t), log=True)
        differences.append(dse(log_score, x0, x_t, t) - tdce(log_probs, x0, x_t, t))
    torch.testing.assert_close(differences[0], differences[1], rtol=0, atol=1e-9)
    torch.testing.assert_close(differences[0], torch.zeros_like(differences[0]), rtol=0, atol=1e-9)  # C = 0


def test_denoiser_to_score_reproduces_exact_scores_by_enumeration():
    # Reference: exact concrete scores p_t(x^{i<-y}) / p_t(x) over all 4^3 sequences (vocab 3, length 3).
    vocab, length, time = 3, 3, 0.42
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    p0 = toy_data(vocab, length, seed=1)
    total = process.total(torch.tensor([time], dtype=torch.float64))
    matrix = process.rate_matrix.matrix().numpy()
    p_t = (p0[:, None] * sequence_transition(matrix, float(total), length, vocab)).sum(0)
    scores = exact_scores(p_t, vocab + 1, length)
    xs = all_sequences(vocab + 1, length)
    # The true denoiser p(x0^i = y | x_t): brute-force Bayes over the clean sequences consistent with x_t.
    x0s = all_sequences(vocab, length)
    denoiser = np.zeros((len(xs), length, vocab))
    for k, x in enumerate(xs):
        keep = np.all((x0s == x) | (x == vocab), axis=1)
        post = p0 * keep
        for i in range(length):
            denoiser[k, i] = np.bincount(x0s[:, i], weights=post, minlength=vocab) / post.sum()
    x_t = torch.as_tensor(xs)
    totals = total.expand(len(xs))
    with np.errstate(divide="ignore"):  # log 0 = -inf for tokens that x_t rules out
        log_denoiser = np.log(denoiser)
    score = losses.denoiser_to_score(torch.as_tensor(log_denoiser), x_t, totals)
    masked = (x_t == vocab)[..., None].expand(-1, -1, vocab)
    np.testing.assert_allclose(score[..., :vocab][masked].numpy(), scores[..., :vocab][masked.numpy()], rtol=1e-10)
    back = losses.score_to_denoiser(torch.as_tensor(scores), x_t, totals)
    np.testing.assert_allclose(back[masked].numpy(), denoiser[masked.numpy()], rtol=1e-10)
    one_hot = torch.nn.functional.one_hot(x_t.clamp(max=vocab - 1), vocab).double()
    assert torch.equal(back[~masked], one_hot[~masked])


@given(vocab=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_conversions_round_trip(vocab, seed):
    # Reference: the identity map; scores at unmasked positions follow the documented convention.
    process, x0, x_t, t, g = _batch(vocab, seed)
    probs = torch.softmax(torch.randn(*x0.shape, vocab, dtype=torch.float64, generator=g), -1)
    total = process.total(t)
    score = losses.denoiser_to_score(probs.log(), x_t, total)
    back = losses.score_to_denoiser(score, x_t, total)
    masked = x_t == vocab
    torch.testing.assert_close(back[masked], probs[masked], rtol=1e-12, atol=0)
    assert torch.equal(score.gather(-1, x_t[..., None]), torch.ones_like(x_t[..., None], dtype=score.dtype))
    assert torch.equal(torch.exp(losses.denoiser_to_score(probs.log(), x_t, total, log=True)), score)


@given(seed=st.integers(0, 10_000), schedule=st.sampled_from(sorted(SCHEDULES)))
def test_weights_closed_forms(seed, schedule):
    # References: MDLM's -alpha'/(1 - alpha) by finite differences of alpha = exp(-total); 1/t for LogLinear.
    process, _, _, t, _ = _batch(3, seed, schedule=schedule)
    h = 1e-6
    alpha = lambda s: torch.exp(-process.total(s))  # noqa: E731
    t_inner = t.clamp(2 * h, 1 - 2 * h)
    derivative = (alpha(t_inner + h) - alpha(t_inner - h)) / (2 * h)
    mdlm = -derivative / (1 - alpha(t_inner))
    torch.testing.assert_close(losses.MDLMNELBO(process).weight(t_inner), mdlm, rtol=1e-6, atol=0)
    torch.testing.assert_close(losses.TDCE(process).weight(t_inner), mdlm, rtol=1e-6, atol=0)
    if schedule == "loglinear":
        torch.testing.assert_close(losses.LambdaDCE(process).weight(t), 1 / t, rtol=1e-12, atol=0)


def _reference_integral(process, p0, table, vocab, length):
    """int_0^1 sigma r E_{x0, x_t} sum_i 1[mask] (-log p_theta(x0^i | x_t)) dt, masks enumerated, scipy quad."""
    x0s = all_sequences(vocab, length)
    masks = all_sequences(2, length).astype(bool)
    noisy = np.where(masks[:, None, :], vocab, x0s[None, :, :])  # (M, N0, L)
    idx = sequence_index(noisy, vocab + 1)
    nll = -np.take_along_axis(table[idx], x0s[None, :, :, None], -1)[..., 0]  # (M, N0, L)
    per_mask = (nll * masks[:, None, :]).sum(-1) @ p0  # (M,)
    count = masks.sum(-1)
    schedule = process.schedule

    def integrand(time):
        tt = torch.tensor(time, dtype=torch.float64)
        total, sigma = float(schedule.total(tt)), float(schedule.sigma(tt))
        lam = -math.expm1(-total)
        prob = lam**count * (1 - lam) ** (length - count)
        return sigma * math.exp(-total) / lam * float(prob @ per_mask)

    value, _ = quad(integrand, 0.0, 1.0, limit=200, epsabs=1e-11, epsrel=1e-11)
    return value


@pytest.mark.parametrize("name", ["TDCE", "LambdaDCE", "MDLMNELBO", "ScoreEntropy"])
def test_monte_carlo_mean_matches_quadrature(name):
    # Reference: scipy quad of the t-DCE integrand with x_t enumerated (vocab 3, length 3, Geometric schedule,
    # under which lambda-DCE's sampler differs from uniform t). Tolerance: 5 standard errors of the mean over
    # 8 independent repeats of 4000 stratified (antithetic) draws each.
    vocab, length = 3, 3
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), SCHEDULES["geometric"])
    p0 = toy_data(vocab, length, seed=5)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=((vocab + 1) ** length, length, vocab))
    table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    reference = _reference_integral(process, p0, table, vocab, length)
    loss = getattr(losses, name)(process)
    g = torch.Generator().manual_seed(1)
    x0s = torch.as_tensor(all_sequences(vocab, length))
    means = []
    for _ in range(8):
        x0 = x0s[ctmc.sample_categorical(torch.as_tensor(p0).expand(4000, -1), g)]
        t = loss.sample_time(4000, generator=g, antithetic=True).double()
        x_t = process.sample(x0, t[:, None], generator=g)
        log_probs = torch.as_tensor(table)[torch.as_tensor(sequence_index(x_t.numpy(), vocab + 1))]
        if name == "ScoreEntropy":
            output = losses.denoiser_to_score(log_probs, x_t, process.total(t), log=True)
        else:
            output = log_probs
        means.append(loss(output, x0, x_t, t).mean().item())
    mean, error = np.mean(means), np.std(means, ddof=1) / math.sqrt(len(means))
    assert abs(mean - reference) < 5 * error, (mean, reference, error)
