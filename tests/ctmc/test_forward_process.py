"""ForwardProcess against references: scipy.linalg.expm of (total(t) - total(s)) Q with total written out in
numpy from the schedules' formulas, Chapman-Kolmogorov across times, marginals as rows, and the
time-inhomogeneous forward equation d/dt P(0, t) = P(0, t) sigma(t) Q by central differences."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from ctmc_strategies import rate_matrices
from hypothesis import given
from hypothesis import strategies as st

import ctmc

# A moderate rate range keeps exp(total(1) Q) well inside float64 for the Geometric schedule (total(1) ~ 20).
PROCESSES = st.builds(
    ctmc.ForwardProcess,
    rate_matrices(max_log10_rate=1.0),
    st.sampled_from([ctmc.LogLinear(), ctmc.LogLinear(eps=0.1), ctmc.Geometric(), ctmc.Geometric(1e-3, 5.0)]),
)


def numpy_total(schedule: ctmc.NoiseSchedule, t: float) -> float:
    """total(t) from the seed formulas: -log(1 - (1 - eps) t) and sigma_min ((sigma_max / sigma_min)^t - 1)."""
    if isinstance(schedule, ctmc.LogLinear):
        return -np.log(1.0 - (1.0 - schedule.eps) * t)
    return schedule.sigma_min * ((schedule.sigma_max / schedule.sigma_min) ** t - 1.0)


def as64(value) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@given(PROCESSES, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_transition_equals_expm_of_total_noise(process, a, b):
    """transition(s, t) vs scipy.linalg.expm((total(t) - total(s)) Q), float64, at 1e-9 (total known to 1e-15
    relative, so P moves by at most ~1e-13 through it)."""
    s, t = min(a, b), max(a, b)
    q = process.rate_matrix.matrix().numpy()
    reference = scipy.linalg.expm((numpy_total(process.schedule, t) - numpy_total(process.schedule, s)) * q)
    np.testing.assert_allclose(process.transition(as64(s), as64(t)).numpy(), reference, rtol=0, atol=1e-9)


@given(PROCESSES, st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_chapman_kolmogorov_across_times(process, times):
    """P(s, t) vs the numpy product P(s, u) @ P(u, t) for s <= u <= t, at 1e-10."""
    s, u, t = sorted(times)
    product = process.transition(as64(s), as64(u)).numpy() @ process.transition(as64(u), as64(t)).numpy()
    np.testing.assert_allclose(process.transition(as64(s), as64(t)).numpy(), product, rtol=0, atol=1e-10)


@given(PROCESSES, st.integers(0, 2**32 - 1))
def test_marginal_is_a_row_of_the_transition(process, seed):
    """marginal(x0, t[:, None]) vs transition(0, t_b)[x0[b, l], :] for (B, L) tokens and (B,) times."""
    rng = np.random.default_rng(seed)
    x0 = torch.from_numpy(rng.integers(0, process.num_states, size=(3, 4)))
    t = torch.from_numpy(rng.uniform(0.0, 1.0, size=3))
    got = process.marginal(x0, t[:, None])
    assert got.shape == (3, 4, process.num_states) and got.dtype == torch.float64
    full = process.transition(torch.zeros(3, dtype=torch.float64), t).numpy()  # (3, n, n)
    np.testing.assert_allclose(got.numpy(), full[np.arange(3)[:, None], x0.numpy()], rtol=0, atol=1e-12)


@given(PROCESSES, st.floats(0.05, 0.95))
def test_generator_drives_the_inhomogeneous_forward_equation(process, t):
    """generator(t) == sigma(t) Q (numpy) and (P(0, t + h) - P(0, t - h)) / 2h vs P(0, t) generator(t)
    with h = 1e-6 / max(1, |generator(t)|); tolerance 1e-6 |generator(t)| (truncation and rounding as in
    test_kolmogorov, plus sigma's variation over [t - h, t + h], which is second order)."""
    q = process.rate_matrix.matrix().numpy()
    generator = process.generator(as64(t)).numpy()
    np.testing.assert_allclose(generator, process.sigma(as64(t)).item() * q, rtol=1e-15, atol=0)
    scale = max(1.0, np.abs(generator).max())
    h = 1e-6 / scale
    zero = as64(0.0)
    derivative = (process.transition(zero, as64(t + h)) - process.transition(zero, as64(t - h))).numpy() / (2 * h)
    expected = process.transition(zero, as64(t)).numpy() @ generator
    np.testing.assert_allclose(derivative, expected, rtol=0, atol=1e-6 * scale)


def test_process_delegates_to_its_parts():
    """num_states, sigma and total are those of the rate matrix and the schedule (exact equality)."""
    schedule, chain = ctmc.Geometric(), ctmc.Absorbing(9)
    process = ctmc.ForwardProcess(chain, schedule)
    t = torch.linspace(0.0, 1.0, 7, dtype=torch.float64)
    assert process.rate_matrix is chain and process.schedule is schedule and process.num_states == 10
    assert torch.equal(process.sigma(t), schedule.sigma(t)) and torch.equal(process.total(t), schedule.total(t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_absorbing_log_linear_masks_a_fraction_t(dtype):
    """Absorbing + LogLinear(eps): P(x_t = mask | x_0 = token) = (1 - eps) t, MDLM's linear schedule (seed)."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(5), ctmc.LogLinear(eps=1e-3))
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=dtype)
    marginal = process.marginal(torch.full((4,), 2), t)
    assert marginal.dtype == dtype
    np.testing.assert_allclose(marginal[:, 5].double().numpy(), (1 - 1e-3) * t.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(marginal[:, 2].double().numpy(), 1 - (1 - 1e-3) * t.double().numpy(), atol=1e-6)
