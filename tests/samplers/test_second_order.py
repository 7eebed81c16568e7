"""theta-trapezoidal and theta-RK-2 (samplers/trapezoidal.py): the shared contract, the sampler's histogram
against the exact law of the scheme by enumeration (tests/samplers/sampler_law.py, an independent dense
implementation) at coarse steps where the scheme is far from p0, the trapezoidal coefficients against their
defining conditions, and bad theta."""

import pytest
import torch
from sampler_contract import EPS, LENGTH, SamplerContract, make_toy
from sampler_toy import total_variation, tv_noise_bound

import samplers
from ctmc.scheme_law import law_at_eps, marginal_at


class TestTrapezoidal(SamplerContract):
    """64 steps = 129 network calls, as Euler's 128 steps; bias allowance 0.01 (exact law with the denoising step:
    TV to p0 0.0016 (absorbing) and 0.0008 (uniform) at 64 steps, benchmarks/bench_samplers.py)."""

    sampler_class = samplers.TrapezoidalSampler
    fine_steps = 64
    bias = 0.01


class TestRK2(SamplerContract):
    """64 steps = 129 network calls; bias allowance 0.02 (exact law: TV to p0 <= 0.015 at 64 steps)."""

    sampler_class = samplers.RK2Sampler
    fine_steps = 64
    bias = 0.02


@pytest.mark.parametrize("chain", ["uniform", "absorbing"])
@pytest.mark.parametrize(
    ("cls", "scheme"),
    [(samplers.TrapezoidalSampler, "trapezoidal"), (samplers.RK2Sampler, "rk2"), (samplers.EulerSampler, "euler")],
)
def test_histogram_matches_exact_law_of_the_scheme(chain, cls, scheme):
    """Two coarse steps, no final denoising: the histogram of x_eps over all states is the scheme's law."""
    toy, model = make_toy(chain)
    num = 20_000
    law = law_at_eps(toy, scheme, 2, EPS)
    out = cls(toy.process, steps=2, eps=EPS, denoise=False).sample(
        model, num, LENGTH, generator=torch.Generator().manual_seed(7)
    )
    histogram = torch.bincount((out * toy.powers).sum(-1), minlength=toy.states.shape[0]).double() / num
    assert total_variation(histogram, law) <= tv_noise_bound(law, num)
    assert total_variation(law, marginal_at(toy, EPS)) > 2 * tv_noise_bound(law, num)  # the test can fail


@pytest.mark.parametrize("theta", [0.2, 0.5, 0.7])
def test_trapezoidal_coefficients_are_second_order(theta):
    """alpha_1 - alpha_2 = 1 (consistency) and theta (1 - theta) alpha_1 = 1/2 (second order), derived from
    the Taylor expansion of the scheme for y' = f(y); checked numerically on y' = -y^2 (order ~2)."""
    toy, _ = make_toy("uniform")
    alpha_1, alpha_2 = samplers.TrapezoidalSampler(toy.process, theta=theta).coefficients()
    assert alpha_1 - alpha_2 == pytest.approx(1.0)
    assert theta * (1 - theta) * alpha_1 == pytest.approx(0.5)

    def solve(steps: int) -> float:
        y, h = 1.0, 1.0 / steps
        for _ in range(steps):
            mid = y + theta * h * (-(y**2))
            y = mid + (1 - theta) * h * (alpha_1 * -(mid**2) - alpha_2 * -(y**2))
        return abs(y - 0.5)  # exact solution y(1) = 1 / (1 + 1)

    assert 3.5 < solve(20) / solve(40) < 4.5


def test_bad_theta_raises():
    toy, _ = make_toy("uniform")
    bad_thetas = [(samplers.TrapezoidalSampler, 1.0), (samplers.TrapezoidalSampler, 0.0), (samplers.RK2Sampler, 1.5)]
    for cls, bad in bad_thetas:
        with pytest.raises(ValueError, match="theta"):
            cls(toy.process, theta=bad)
