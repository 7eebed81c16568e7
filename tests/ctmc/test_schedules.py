"""Noise schedules against independent references: scipy.integrate.quad for total = integral of sigma,
central finite differences and torch.autograd for sigma = d total / dt, and the round trip with inverse_total."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import torch
from hypothesis import given
from hypothesis import strategies as st

import ctmc

SCHEDULES = st.one_of(
    st.builds(ctmc.LogLinear, eps=st.floats(1e-5, 0.5)),
    st.builds(
        lambda low, ratio: ctmc.Geometric(sigma_min=low, sigma_max=low * ratio),
        low=st.floats(1e-5, 1.0),
        ratio=st.floats(1.5, 1e5),
    ),
)
UNIT_TIMES = st.floats(0.0, 1.0)


def as64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@given(SCHEDULES, UNIT_TIMES)
def test_total_is_the_integral_of_sigma(schedule, t):
    """total(t) vs scipy.integrate.quad(sigma, 0, t), relative 1e-9 (quad's own error is ~1e-12 here)."""
    # s = u t: the integral over [0, t] as t times one over [0, 1], which quad resolves for any t (even 1e-308)
    integral, _ = scipy.integrate.quad(lambda u: schedule.sigma(as64(u * t)).item(), 0.0, 1.0, epsabs=0, epsrel=1e-12)
    integral *= t
    assert schedule.total(as64(t)).item() == pytest.approx(integral, rel=1e-9, abs=1e-300)


@given(SCHEDULES, st.floats(0.01, 0.99))
def test_sigma_is_the_derivative_of_total(schedule, t):
    """sigma(t) vs the central difference (total(t + h) - total(t - h)) / 2h with h = 1e-6 (relative 1e-6:
    truncation h^2 total''' / 6 and rounding 1e-16 total / h are both below 1e-7 sigma for these schedules)
    and vs torch.autograd of total at t (relative 1e-12)."""
    h = 1e-6
    difference = (schedule.total(as64(t + h)) - schedule.total(as64(t - h))).item() / (2 * h)
    sigma = schedule.sigma(as64(t)).item()
    assert sigma == pytest.approx(difference, rel=1e-6)
    time = as64(t).requires_grad_()
    (gradient,) = torch.autograd.grad(schedule.total(time), time)
    assert sigma == pytest.approx(gradient.item(), rel=1e-12)


@given(SCHEDULES, UNIT_TIMES)
def test_inverse_total_round_trips(schedule, t):
    """inverse_total(total(t)) vs t (absolute 1e-12, float64), and total(inverse_total(s)) vs s (relative 1e-12)."""
    total = schedule.total(as64(t))
    assert schedule.inverse_total(total).item() == pytest.approx(t, abs=1e-12)
    assert schedule.total(schedule.inverse_total(total)).item() == pytest.approx(total.item(), rel=1e-12, abs=1e-300)


@given(SCHEDULES)
def test_total_starts_at_zero_and_increases(schedule):
    """total(0) == 0 exactly; on a 201-point grid total is strictly increasing and sigma > 0 (numpy diff)."""
    assert schedule.total(as64(0.0)).item() == 0.0
    grid = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    assert (np.diff(schedule.total(grid).numpy()) > 0).all()
    assert (schedule.sigma(grid).numpy() > 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("schedule", [ctmc.LogLinear(), ctmc.Geometric()], ids=repr)
def test_schedules_keep_the_dtype_and_shape_of_t(schedule, dtype):
    """Outputs have t's dtype and shape; float32 values agree with float64 at relative 1e-5."""
    t = torch.rand(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in (schedule.sigma, schedule.total):
        low, high = method(t.to(dtype)), method(t)
        assert low.dtype == dtype and low.shape == t.shape
        np.testing.assert_allclose(low.double().numpy(), high.numpy(), rtol=1e-5)


def test_log_linear_masks_linearly_and_geometric_matches_sedd():
    """LogLinear: e^{-total(t)} = 1 - (1 - eps) t (MDLM/RADD linear masking, seed formula); Geometric:
    total(t) + sigma_min = sigma_min^{1-t} sigma_max^t, SEDD's geometric total noise up to its constant."""
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    log_linear = ctmc.LogLinear(eps=1e-3)
    np.testing.assert_allclose(torch.exp(-log_linear.total(t)).numpy(), 1 - (1 - 1e-3) * t.numpy(), rtol=1e-14)
    geometric = ctmc.Geometric(sigma_min=1e-4, sigma_max=20.0)
    sedd = 1e-4 ** (1 - t.numpy()) * 20.0 ** t.numpy()
    np.testing.assert_allclose(geometric.total(t).numpy() + 1e-4, sedd, rtol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("schedule", [ctmc.LogLinear(eps=0.375), ctmc.LogLinear(), ctmc.Geometric()], ids=repr)
def test_inverse_total_accepts_total_at_one_in_either_dtype(schedule, dtype):
    """Regression: inverse_total(total(1)) == 1 in float32 and float64 (the bound total(1) was once computed in
    float32 and refused the float64 total(1) of LogLinear(eps=0.375) as out of range)."""
    one = torch.ones((), dtype=dtype)
    assert schedule.inverse_total(schedule.total(one)).item() == pytest.approx(1.0, abs=1e-6)


@given(st.floats(1e-5, 1.0), st.floats(1.5, 1e5), UNIT_TIMES)
def test_geometric_started_at_sigma_min_is_sedds_formula(low, ratio, t):
    """Geometric(start_at_sigma_min=True) against SEDD's GeometricNoise closed forms written in numpy:
    total = sigma_min^{1-t} sigma_max^t and rate = total log(sigma_max / sigma_min) (relative 1e-12); the rate
    equals the default Geometric's, total(t) - total(0) = integral of sigma (scipy.integrate.quad, relative 1e-9,
    absolute 1e-15 sigma_min for the cancellation of the difference),
    and inverse_total round-trips (absolute 1e-12)."""
    high = low * ratio
    schedule = ctmc.Geometric(sigma_min=low, sigma_max=high, start_at_sigma_min=True)
    total_sedd = np.float64(low) ** (1 - t) * np.float64(high) ** t
    assert schedule.total(as64(t)).item() == pytest.approx(total_sedd, rel=1e-12)
    assert schedule.sigma(as64(t)).item() == pytest.approx(total_sedd * np.log(high / low), rel=1e-12)
    assert schedule.sigma(as64(t)).item() == ctmc.Geometric(sigma_min=low, sigma_max=high).sigma(as64(t)).item()
    # s = u t: the integral over [0, t] as t times one over [0, 1], which quad resolves for any t (even 1e-308)
    integral, _ = scipy.integrate.quad(lambda u: schedule.sigma(as64(u * t)).item(), 0.0, 1.0, epsabs=0, epsrel=1e-12)
    integral *= t
    increase = (schedule.total(as64(t)) - schedule.total(as64(0.0))).item()  # cancels to ~1e-16 total(0) at t ~ 0
    assert increase == pytest.approx(integral, rel=1e-9, abs=1e-15 * low)
    assert schedule.inverse_total(schedule.total(as64(t))).item() == pytest.approx(t, abs=1e-12)


def test_geometric_started_at_sigma_min_refuses_totals_below_sigma_min():
    """inverse_total is defined on [sigma_min, total(1)] only; below it raises a ValueError naming total(0)."""
    schedule = ctmc.Geometric(sigma_min=1e-4, sigma_max=20.0, start_at_sigma_min=True)
    assert schedule.total(as64(0.0)).item() == pytest.approx(1e-4, rel=1e-15)
    with pytest.raises(ValueError, match=r"total must be >= total\(0\)"):
        schedule.inverse_total(as64(0.5e-4))
    with pytest.raises(TypeError, match="start_at_sigma_min must be a bool"):
        ctmc.Geometric(start_at_sigma_min=1)
