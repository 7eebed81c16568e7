"""Every bad input at a public boundary raises TypeError/ValueError whose message names the argument.

The reference is the contract in ctmc's docstrings and docs/conventions.md: ids in [0, n), float times that are
finite and >= 0 (<= 1 for diffusion time), times broadcastable to x without enlarging it, valid row-convention
generators, s <= t, D3PM steps in range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ctmc

CHAINS = [ctmc.Uniform(4), ctmc.Absorbing(3), ctmc.BirthDeath(4, 1.0), ctmc.Dense(ctmc.Uniform(4).matrix())]
X = torch.tensor([[0, 1, 3], [2, 2, 0]])
T = torch.tensor(0.5, dtype=torch.float64)

BAD_TIMES = [
    (torch.tensor(-0.1, dtype=torch.float64), ValueError, ">= 0"),
    (torch.tensor(math.nan), ValueError, "finite"),
    (torch.tensor(math.inf), ValueError, "finite"),
    (torch.tensor(1), TypeError, "floating dtype"),
    (True, TypeError, "bool"),
    ("0.5", TypeError, "float"),
]


@pytest.mark.parametrize("rate_matrix", CHAINS, ids=repr)
@pytest.mark.parametrize("method", ["transition_from", "transition_to", "sample"])
def test_state_methods_reject_bad_ids(rate_matrix, method):
    """ids outside [0, n) (ValueError naming x and the range) and float ids (TypeError naming x)."""
    call = getattr(rate_matrix, method)
    for bad in (torch.tensor([0, 4]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match=r"x holds state ids outside \[0, 4\)"):
            call(bad, T)
    with pytest.raises(TypeError, match="x must be an integer tensor"):
        call(torch.tensor([0.0, 1.0]), T)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor"):
        call([0, 1], T)


@pytest.mark.parametrize("rate_matrix", CHAINS, ids=repr)
@pytest.mark.parametrize("method", ["transition_from", "transition_to", "sample"])
@pytest.mark.parametrize(("t", "error", "fragment"), BAD_TIMES)
def test_state_methods_reject_bad_times(rate_matrix, method, t, error, fragment):
    """t < 0, nan, inf, integer tensors, bools and strings: the message names t and the rule."""
    with pytest.raises(error, match=f"t .*{fragment}|t must .*{fragment}"):
        getattr(rate_matrix, method)(X, t)


@pytest.mark.parametrize("rate_matrix", CHAINS, ids=repr)
def test_times_that_do_not_broadcast_to_x_are_rejected(rate_matrix):
    """A (B,) time with (B, L) ids, or a time larger than x, must fail with a hint to use t[:, None]."""
    for method in (rate_matrix.transition_from, rate_matrix.transition_to, rate_matrix.sample):
        with pytest.raises(ValueError, match=r"t of shape \(2,\) does not broadcast.*t\[:, None\]"):
            method(X, torch.tensor([0.1, 0.2], dtype=torch.float64))
        with pytest.raises(ValueError, match="does not broadcast"):
            method(X[0], torch.rand(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="t of shape"):
        rate_matrix.propagate(torch.full((2, 4), 0.25), torch.rand(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="p must have last dimension 4"):
        rate_matrix.propagate(torch.full((2, 5), 0.2), T)
    with pytest.raises(TypeError, match="p must be a floating tensor"):
        rate_matrix.propagate(torch.ones(2, 4, dtype=torch.long), T)
    for bad in (torch.tensor([[0, 4]]), torch.tensor([-1])):
        with pytest.raises(ValueError, match="x holds state ids"):
            rate_matrix.outgoing_rates(bad)
        with pytest.raises(ValueError, match="x holds state ids"):
            rate_matrix.incoming_rates(bad)


@pytest.mark.parametrize(("t", "error", "fragment"), BAD_TIMES)
def test_transition_rejects_bad_times(t, error, fragment):
    """transition(t) for every class: the same time rules."""
    for rate_matrix in CHAINS:
        with pytest.raises(error, match=fragment):
            rate_matrix.transition(t)


def _generator(rows):
    return torch.tensor(rows, dtype=torch.float64)


INVALID_MATRICES = [
    (_generator([[-1.0, 1.0], [-0.5, 0.5]]), ValueError, r"off-diagonal entries are jump rates.*\[1, 0\]"),
    (_generator([[-1.0, 1.0], [0.5, -0.4]]), ValueError, "rows must sum to 0.*row 1"),
    (_generator([[-1.0, 1.0, 0.0], [0.5, -0.5, 0.0]]), ValueError, r"square 2-d tensor \(n, n\)"),
    (_generator([-1.0, 1.0]), ValueError, "square 2-d tensor"),
    (_generator([[math.nan, 1.0], [0.5, -0.5]]), ValueError, r"finite.*\[0, 0\]"),
    (_generator([[0.0]]), ValueError, "at least 2 states"),
    (torch.tensor([[-1, 1], [1, -1]]), TypeError, "floating tensor"),
    ([[-1.0, 1.0], [1.0, -1.0]], TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize(("matrix", "error", "fragment"), INVALID_MATRICES)
def test_invalid_generators_are_rejected(matrix, error, fragment):
    """validate_generator and Dense refuse every invalid matrix; the message names `matrix` and the rule."""
    with pytest.raises(error, match=f"matrix.*{fragment}|{fragment}"):
        ctmc.validate_generator(matrix)
    with pytest.raises(error, match="matrix"):
        ctmc.Dense(matrix)


def test_dense_accepts_numpy_and_a_looser_atol():
    """Dense takes a numpy generator; rows off by 1e-6 are refused by default and accepted with atol=1e-5."""
    q = np.array([[-1.0, 1.0], [2.0, -2.0 + 1e-6]])
    with pytest.raises(ValueError, match=r"rows must sum to 0.*Set the diagonal"):
        ctmc.Dense(q)
    assert ctmc.Dense(q, atol=1e-5).num_states == 2


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: ctmc.Uniform(1), "num_states must be an int >= 2"),
        (lambda: ctmc.Uniform(3.0), "num_states must be an int >= 2"),
        (lambda: ctmc.Absorbing(0), "vocab_size must be an int >= 1"),
        (lambda: ctmc.BirthDeath(1), "num_states must be an int >= 2"),
        (lambda: ctmc.BirthDeath(3, rate=0.0), "rate must be a finite number > 0"),
        (lambda: ctmc.BirthDeath(3, rate=math.inf), "rate must be a finite number > 0"),
        (lambda: ctmc.LogLinear(eps=0.0), "eps must be a float in"),
        (lambda: ctmc.LogLinear(eps=1.0), "eps must be a float in"),
        (lambda: ctmc.Geometric(sigma_min=1.0, sigma_max=0.5), "sigma_min < sigma_max"),
        (lambda: ctmc.Geometric(sigma_min=0.0), "0 < sigma_min"),
    ],
)
def test_constructors_reject_bad_arguments(build, fragment):
    """Constructor arguments out of range raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=fragment):
        build()


@pytest.mark.parametrize("schedule", [ctmc.LogLinear(), ctmc.Geometric()], ids=repr)
def test_schedules_reject_times_outside_unit_interval(schedule):
    """sigma/total refuse t > 1, t < 0, nan and integer t; inverse_total refuses total > total(1)."""
    for method in (schedule.sigma, schedule.total):
        with pytest.raises(ValueError, match=r"t must be <= 1.0"):
            method(torch.tensor(1.0 + 1e-9, dtype=torch.float64))
        with pytest.raises(ValueError, match="t must be >= 0"):
            method(torch.tensor(-1e-9, dtype=torch.float64))
        with pytest.raises(ValueError, match="t must be finite"):
            method(torch.tensor(math.nan))
        with pytest.raises(TypeError, match="t must have a floating dtype"):
            method(torch.tensor(1))
    top = schedule.total(torch.tensor(1.0, dtype=torch.float64)).item()
    with pytest.raises(ValueError, match="total must be <="):
        schedule.inverse_total(torch.tensor(top * (1 + 1e-6), dtype=torch.float64))


def test_forward_process_rejects_bad_arguments():
    """Wrong parts (TypeError naming them), t > 1, s > t, bad x0 ids, unbroadcastable t."""
    with pytest.raises(TypeError, match=r"rate_matrix must be a ctmc.RateMatrix"):
        ctmc.ForwardProcess(np.eye(3), ctmc.LogLinear())
    with pytest.raises(TypeError, match=r"schedule must be a ctmc.NoiseSchedule"):
        ctmc.ForwardProcess(ctmc.Uniform(4), lambda t: t)
    process = ctmc.ForwardProcess(ctmc.Uniform(4), ctmc.LogLinear())
    with pytest.raises(ValueError, match="s must be <= t"):
        process.transition(torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"s must be <= 1.0"):
        process.transition(torch.tensor(1.5), torch.tensor(0.5))
    for method in (process.marginal, process.sample):
        with pytest.raises(ValueError, match=r"t must be <= 1.0"):
            method(X, torch.tensor(1.01))
        with pytest.raises(TypeError, match="t must have a floating dtype"):
            method(X, torch.tensor(1))
        with pytest.raises(ValueError, match=r"x0 holds state ids outside \[0, 4\)"):
            method(torch.tensor([4]), torch.tensor(0.5))
        with pytest.raises(ValueError, match=r"t\[:, None\]"):
            method(X, torch.tensor([0.1, 0.2]))


def test_reverse_rates_reject_bad_scores_and_ids():
    """score of the wrong shape, negative, nan or integer; x out of range: each message names its argument."""
    chain = ctmc.Uniform(4)
    score = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match=r"score must have shape \(2, 3, 4\)"):
        ctmc.reverse_rates(chain, X, torch.ones(2, 3, 5))
    with pytest.raises(ValueError, match="score must be finite and non-negative"):
        ctmc.reverse_rates(chain, X, -score)
    with pytest.raises(ValueError, match="score must be finite and non-negative"):
        ctmc.reverse_rates(chain, X, score * math.nan)
    with pytest.raises(TypeError, match="score must be a floating tensor"):
        ctmc.reverse_rates(chain, X, score.long())
    with pytest.raises(ValueError, match="x holds state ids"):
        ctmc.reverse_rates(chain, X + 4, score)


def test_discrete_time_chain_rejects_bad_arguments():
    """betas out of (0, 1] or not 1-d, steps out of range or not integers, x0 probabilities of the wrong shape."""
    chain = ctmc.Uniform(4)
    for betas in ([0.0, 0.5], [0.5, 1.5], [[0.5]], []):
        with pytest.raises(ValueError, match="betas must"):
            ctmc.DiscreteTimeChain(chain, torch.tensor(betas, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"rate_matrix must be a ctmc.RateMatrix"):
        ctmc.DiscreteTimeChain(chain.matrix(), torch.tensor([0.5]))
    discrete = ctmc.DiscreteTimeChain(chain, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"step i must lie in \[1, 3\]"):
        discrete.step_matrix(0)
    with pytest.raises(ValueError, match=r"step i must lie in \[0, 3\]"):
        discrete.cumulative_matrix(4)
    with pytest.raises(TypeError, match="step i must be an integer"):
        discrete.step_matrix(1.0)
    with pytest.raises(ValueError, match=r"step i must lie in \[1, 3\]"):
        discrete.posterior(X, X, 4)
    with pytest.raises(ValueError, match="x0 probabilities must have shape"):
        discrete.posterior(X, torch.full((2, 3, 5), 0.2), 2)
    with pytest.raises(ValueError, match="x0 and x_t must have the same shape"):
        discrete.posterior(X, X[:, :2], 2)
    with pytest.raises(ValueError, match=r"x_t holds state ids"):
        discrete.posterior(X + 4, X, 2)
    with pytest.raises(ValueError, match=r"i\[:, None\]"):
        discrete.sample(X, torch.tensor([1, 2]))
