"""Every sampler against the contract (tests/samplers/sampler_contract.py): exactness with exact scores on a
toy chain, conditioning, reproducibility, NFE and bad input. Bias allowances at 128 steps: Euler, tau-leaping
and Tweedie are first-order in the step for the joint law (several positions may move in one step from the
same x_t), so we allow 0.01 in TV (measured: <= 0.005 above the noise floor at 128 steps). Euler and Tweedie
draw identical tokens on the absorbing chain with the log-linear schedule."""

import torch
from sampler_contract import EPS, LENGTH, VOCAB, SamplerContract, make_toy

import ctmc
import samplers


class TestEuler(SamplerContract):
    sampler_class = samplers.EulerSampler
    bias = 0.01


class TestTweedie(SamplerContract):
    sampler_class = samplers.TweedieSampler
    bias = 0.01


class TestTauLeaping(SamplerContract):
    sampler_class = samplers.TauLeapingSampler
    bias = 0.01


class TestFirstHitting(SamplerContract):
    """Exact with one token per call: no bias allowance at all; steps=1 decodes every position at once."""

    sampler_class = samplers.FirstHittingSampler
    chains = ("absorbing", "absorbing-denoiser", "absorbing-x0")
    coarse_steps = 1
    fine_steps = None
    bias = 0.0


def _wavy_score(x, total):
    """A deterministic, non-exact positive score (B, L, n) that depends on x and the time, of the size of the
    exact one (sum_y s_y ~ 1 / expm1(total), so that the steps' jump probabilities are mostly below 1)."""
    n = VOCAB + 1
    wave = torch.exp(torch.sin(3.0 * x[..., None] + torch.arange(n) + total[:, None, None]))
    return wave / (VOCAB * torch.expm1(total))[:, None, None]


def test_euler_and_tweedie_draw_identical_tokens_on_absorbing_loglinear():
    """LogLinear(eps): sigma(t) (t - s) = (1 - eps)(t - s) / (1 - (1 - eps) t) = expm1(sigma-bar(t) - sigma-bar(s)),
    so Euler's jump probability min(1, (t - s) sigma(t) lambda) and Tweedie's min(1, expm1(Delta) lambda) at a mask
    are equal for every score (lambda = sum_y s_y; for an exact denoiser lambda = 1 / expm1(sigma-bar(t)) and both
    are (t - s) / t), both draw the destination proportional to s_y, and the final step is shared: the same tokens
    for one seed. Reference: Tweedie's tokens. With a geometric schedule they differ (the test can fail)."""
    toy, denoiser = make_toy("absorbing-denoiser")
    for model in (denoiser, samplers.ConcreteScore(toy.score), _wavy_score):
        euler, tweedie = (
            cls(toy.process, steps=16, eps=EPS).sample(model, 2048, LENGTH, generator=torch.Generator().manual_seed(0))
            for cls in (samplers.EulerSampler, samplers.TweedieSampler)
        )
        assert torch.equal(euler, tweedie), model
    t = torch.linspace(1.0, 0.01, 50, dtype=torch.float64)
    s = t - 0.005
    process = toy.process
    euler_probability = process.sigma(t) * (t - s) / torch.expm1(process.total(t))
    tweedie_probability = torch.expm1(process.total(t) - process.total(s)) / torch.expm1(process.total(t))
    torch.testing.assert_close(euler_probability, (t - s) / t, rtol=1e-10, atol=0)
    torch.testing.assert_close(tweedie_probability, (t - s) / t, rtol=1e-10, atol=0)
    geometric = ctmc.ForwardProcess(process.rate_matrix, ctmc.Geometric(1e-2, 2.0))
    euler, tweedie = (
        cls(geometric, steps=16, eps=EPS).sample(denoiser, 2048, LENGTH, generator=torch.Generator().manual_seed(0))
        for cls in (samplers.EulerSampler, samplers.TweedieSampler)
    )
    assert not torch.equal(euler, tweedie)
