"""The exact law of a tau-leaping scheme on a `ToyChain`, by enumeration of every state (float64, dense).

An implementation independent of `samplers`: the reverse rates are built from the dense generator
(`rate_matrix.matrix()`) and the toy's exact score, R_t(x)[i, y] = sigma(t) Q[y, x_i] s_t(x)_{i, y} (y != x_i),
and each stage's kernel is the product over positions of "stay, or jump once to y in proportion to its rate".
Schemes: "euler" (jump probability min(1, dt lambda)), "tau" (1 - exp(-dt lambda)), "trapezoidal" and "rk2"
(theta-methods of Ren et al. 2025, see samplers/trapezoidal.py). `law_at_eps` returns the law of x_eps (before
any final denoising step) started from the prior; compare it with `marginal_at(toy, eps)`, or apply
`denoised_law` and compare with p0.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

import ctmc
from ctmc.enumeration import ToyChain


def reverse_rates(toy: ToyChain, states: Tensor, t: float) -> Tensor:
    """(M, L, n) rates sigma(t) Q[y, x_i] s_t(x)_{i, y}, zero at y = x_i, for states (M, L)."""
    time = torch.tensor(t, dtype=torch.float64)
    total = toy.process.total(time).expand(states.shape[0])
    score = toy.score(states, total)
    q = toy.process.rate_matrix.matrix(dtype=torch.float64)
    incoming = q.T[states]  # (M, L, n): Q[y, x_i]
    rates = float(toy.process.sigma(time)) * incoming * score
    return rates.scatter(-1, states[..., None], 0.0)


def leap_kernel(toy: ToyChain, start: Tensor, rates: Tensor, length: float, rule: str) -> Tensor:
    """(M, S) law of the state after one stage from start (M, L) with rates (M, L, n) over `length`."""
    total = rates.sum(-1)
    jump = (length * total).clamp(max=1.0) if rule == "euler" else -torch.expm1(-length * total)
    # Signed rates (clip=False) may cancel to a zero total: the limit of rates * jump / total is rates * length.
    ratio = torch.where(total != 0, jump / torch.where(total == 0, 1.0, total), length)
    move = rates * ratio[..., None]
    position = move.scatter_add(-1, start[..., None], (1.0 - jump)[..., None])  # (M, L, n)
    columns = toy.states.T  # (L, S)
    per_position = torch.stack([position[:, i, columns[i]] for i in range(toy.length)], 1)  # (M, L, S)
    return per_position.prod(1)


def law_at_eps(toy: ToyChain, scheme: str, steps: int, eps: float, theta: float = 0.5, clip: bool = True) -> Tensor:
    """The law (S,) of the scheme's x_eps on the linear grid 1 -> eps with `steps` steps, over toy.states.

    clip=False keeps negative stage-2 rates (a signed "law", not samplable): it isolates the effect of the
    clipping (.)_+ on the order of the theta-methods."""
    states = toy.states
    size = states.shape[0]
    rate_matrix = toy.process.rate_matrix
    if isinstance(rate_matrix, ctmc.Absorbing):
        law = (states == rate_matrix.mask_index).all(1).double()
    else:
        law = torch.full((size,), 1.0 / size, dtype=torch.float64)
    grid = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64).tolist()
    for t, s in itertools.pairwise(grid):
        delta = t - s
        rates_t = reverse_rates(toy, states, t)
        if scheme in ("euler", "tau"):
            law = law @ leap_kernel(toy, states, rates_t, delta, scheme)
            continue
        rho = t - theta * delta
        first = leap_kernel(toy, states, rates_t, theta * delta, "tau")  # (S, S): x -> x*
        rates_rho = reverse_rates(toy, states, rho)[None].expand(size, -1, -1, -1)  # [x, x*]
        before = rates_t[:, None].expand(-1, size, -1, -1)
        if scheme == "trapezoidal":
            alpha_1 = 1.0 / (2 * theta * (1 - theta))
            alpha_2 = ((1 - theta) ** 2 + theta**2) / (2 * theta * (1 - theta))
            start = states[None].expand(size, -1, -1)  # from x*
            combined, length = alpha_1 * rates_rho - alpha_2 * before, (1 - theta) * delta
        elif scheme == "rk2":
            start = states[:, None].expand(-1, size, -1)  # from x
            weight = 1.0 / (2 * theta)
            combined, length = (1 - weight) * before + weight * rates_rho, delta
        else:
            raise ValueError(f"unknown scheme {scheme!r}")
        combined = (combined.clamp_min(0.0) if clip else combined).scatter(-1, start[..., None], 0.0)
        second = leap_kernel(
            toy, start.reshape(-1, toy.length), combined.reshape(-1, toy.length, toy.n), length, "tau"
        ).view(size, size, size)  # [x, x*, y]
        law = torch.einsum("x,xz,xzy->y", law, first, second)
    return law


def denoised_law(toy: ToyChain, law: Tensor, eps: float) -> Tensor:
    """The law over clean sequences (C,) after SEDD's final denoising step from eps to 0 applied to `law` (S,).

    Per position, p(x_0 = y | x_eps = x) proportional to (s exp(-Delta Q))_y P(Delta)[y, x] (Delta =
    sigma-bar(eps), clamped at 0), with the dense matrix exponential; the positions move independently.
    """
    total = toy.process.total(torch.tensor(eps, dtype=torch.float64))
    q = toy.process.rate_matrix.matrix(dtype=torch.float64)
    score = toy.score(toy.states, total.expand(toy.states.shape[0])).clone()
    score.scatter_(-1, toy.states[..., None], 1.0)
    backward = score @ torch.linalg.matrix_exp(-float(total) * q)  # (S, L, n)
    column = torch.linalg.matrix_exp(float(total) * q).T[toy.states]  # (S, L, n): P(Delta)[y, x_i]
    position = (backward * column).clamp_min(0.0)
    position = position / position.sum(-1, keepdim=True)
    columns = toy.clean.T  # (L, C)
    kernel = torch.stack([position[:, i, columns[i]] for i in range(toy.length)], 1).prod(1)  # (S, C)
    return law @ kernel


def marginal_at(toy: ToyChain, t: float) -> Tensor:
    """The true marginal p_t over toy.states (S,)."""
    total = toy.process.total(torch.tensor(t, dtype=torch.float64)).reshape(1)
    return toy.marginal_of(toy.states[None], total)[0]
