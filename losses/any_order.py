"""Exact fixed-order likelihood of a clean-token denoiser on the absorbing chain (RADD, Ou et al. 2024).

A time-independent denoiser p_theta(x^i = y | x_t) (y a clean token, x_t a partly masked sequence) defines,
for every order sigma (a permutation of the L positions), an autoregressive model that reveals the positions
one at a time:

    log p_theta^sigma(x0) = sum_{k<L} log p_theta(x^{sigma(k)} = x0^{sigma(k)} | x0 on sigma(0..k-1), mask elsewhere).

Every factor is normalised over the V tokens, so p_theta^sigma is a probability law over the V^L sequences
for each sigma, and log p_theta^sigma(x0) is an exact log-likelihood, not a bound. RADD's Theorem 2 shows that
the expectation over uniformly random orders of -log p_theta^sigma(x0) equals the lambda-DCE loss with the
masked fraction lambda running over all of (0, 1] (losses.LambdaDCE for eps -> 0); for the exact denoiser,
p_theta^sigma(x0) = p0(x0) for every sigma.

`denoiser_from_score_network` turns a concrete-score network (SEDD's DiT) into such a denoiser by fixing its
noise level; see its docstring for what the resulting number means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ctmc.checks import check_int
from losses._validation import check_log_probs, check_tokens

Denoiser = Callable[[Tensor], Tensor]


def _check_order(order: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor:
    """order: None (left to right) or (B, L) integer, each row a permutation of 0 .. L-1. Returns (B, L) long."""
    batch, length = shape
    if order is None:
        return torch.arange(length, device=device).expand(batch, length)
    order = check_tokens(order, max(length, 1), "order", what="positions").to(device)
    if order.shape != shape:
        raise ValueError(f"order must have the shape of x0, (B, L) = {tuple(shape)}, got {tuple(order.shape)}")
    if not bool((order.sort(-1).values == torch.arange(length, device=device)).all()):
        row = int((order.sort(-1).values != torch.arange(length, device=device)).any(-1).nonzero()[0])
        raise ValueError(
            f"order must hold a permutation of 0 .. {length - 1} in every row, but row {row} is "
            f"{order[row].tolist()}; draw one with torch.rand(B, L).argsort(-1)"
        )
    return order


def _check_output(log_probs: Tensor, batch: int, length: int, vocab_size: int) -> None:
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        raise TypeError(f"denoiser must return a floating tensor of log-probabilities, got {type(log_probs).__name__}")
    if log_probs.shape != (batch, length, vocab_size):
        raise ValueError(
            f"denoiser must return (B, L, V) = {(batch, length, vocab_size)} log-probabilities of the clean token, "
            f"got {tuple(log_probs.shape)}"
        )
    check_log_probs(log_probs)


def any_order_log_likelihood(
    denoiser: Denoiser,
    x0: Tensor,
    order: Tensor | None = None,
    *,
    vocab_size: int | None = None,
    steps_per_call: int = 1,
) -> Tensor:
    """log p_theta^order(x0) = sum_k log p_theta(x0 at order[k] | x0 on order[:k], mask elsewhere), in nats.

    denoiser: callable x (B', L) long in [0, V] (V = vocab_size is the mask) -> (B', L, V) log-probabilities of
    the clean token (e.g. models.RADDDenoiser, or `denoiser_from_score_network(...)`).
    x0: (B, L) long clean tokens in [0, V). order: None (left to right) or (B, L) long, a permutation of
    0 .. L-1 per row; order[b, k] is the k-th position revealed. vocab_size: V, by default denoiser.vocab_size.
    Returns (B,) float64, computed without gradients (an evaluation: the L calls' graphs are never kept).

    Cost: L network calls of batch B on length-L inputs (steps_per_call = s stacks s consecutive reveal steps
    into one call of batch s B: ceil(L / s) calls). Each call holds one (s B, L, V) output, of which only one
    entry per row is kept. The work grows as L times one forward pass, i.e. O(L^2) token evaluations per
    sequence (O(L^3) with attention), against one pass for an AR model or a single ELBO sample.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be a callable x (B, L) -> (B, L, V) log-probs, got {type(denoiser).__name__}")
    if vocab_size is None:
        vocab_size = getattr(denoiser, "vocab_size", None)
        if vocab_size is None:
            raise ValueError(
                "vocab_size is needed (the mask id is V = vocab_size): pass vocab_size=V, or a denoiser with a "
                "vocab_size attribute such as models.RADDDenoiser"
            )
    check_int("vocab_size", vocab_size, 1, "count the clean tokens, mask excluded")
    check_int("steps_per_call", steps_per_call, 1)
    x0 = check_tokens(x0, vocab_size, "x0", what="clean token ids (the mask is not a data token)")
    batch, length = x0.shape
    order = _check_order(order, x0.shape, x0.device)
    # rank[b, i] = step at which position i is revealed; at step k the positions of rank < k are clean.
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(length, device=x0.device).expand(batch, length))
    total = torch.zeros(batch, dtype=torch.float64, device=x0.device)
    with torch.no_grad():
        for start in range(0, length, steps_per_call):
            total += _reveal_steps(denoiser, x0, order, rank, start, min(start + steps_per_call, length), vocab_size)
    return total


def _reveal_steps(
    denoiser: Denoiser, x0: Tensor, order: Tensor, rank: Tensor, start: int, stop: int, vocab_size: int
) -> Tensor:
    """sum over steps k in [start, stop) of log p(x0 at order[:, k] | x0 on order[:, :k]), in one call. (B,)."""
    batch, length = x0.shape
    steps = torch.arange(start, stop, device=x0.device)  # (s,)
    revealed = rank[None] < steps[:, None, None]  # (s, B, L)
    inputs = torch.where(revealed, x0[None], vocab_size).flatten(0, 1)  # (s B, L)
    log_probs = denoiser(inputs)
    _check_output(log_probs, inputs.shape[0], length, vocab_size)
    position = order[:, steps].T.reshape(-1, 1)  # (s B, 1): the position revealed at each step
    token = x0.gather(-1, order[:, steps]).T.reshape(-1, 1, 1)  # (s B, 1, 1)
    picked = log_probs.gather(1, position[..., None].expand(-1, 1, vocab_size)).gather(-1, token)
    return picked.view(len(steps), batch).double().sum(0)


def denoiser_from_score_network(score_network: Callable[[Tensor, Tensor], Tensor], total: float) -> Denoiser:
    """The denoiser implied by a concrete-score network at the fixed total noise sigma-bar = `total` (absorbing).

    score_network: (x (B, L) long in [0, V], sigma-bar (B,)) -> (B, L, V + 1) log concrete scores (models.DiT
    with absorbing_parameterization). Returns x -> (B, L, V) log-probabilities

        log p(x^i = y | x) = log s(x, total)_{i, y} - logsumexp_{y' < V} log s(x, total)_{i, y'},

    which at masked positions equals log ctmc.score_to_denoiser(s, x, total, normalize=True): the factor
    expm1(sigma-bar) of RADD's factorisation cancels in the normalisation, so `total` acts only through the
    network's noise conditioning. (Unmasked positions, which `any_order_log_likelihood` never reads, get the
    same formula rather than a one-hot.) What it means: for the exact score the implied denoiser is the same
    at every sigma-bar (RADD, Theorem 1), and any_order_log_likelihood gives log p0 exactly. For a trained
    network it is the exact likelihood of the any-order model built from the network's conditionals at that
    one noise level, a valid normalised model but not the diffusion model's own likelihood: the reveal steps
    present inputs with every masked fraction from 1 to 1/L, while at a small sigma-bar the network was
    trained on inputs that are mostly unmasked. Report `total` beside the number. vocab_size of the result:
    the network's vocab_size - 1 (its states include the mask).
    """
    states = getattr(score_network, "vocab_size", None)
    if not isinstance(total, (int, float)) or isinstance(total, bool) or not 0.0 < total < float("inf"):
        raise ValueError(f"total must be a finite float > 0 (a noise level sigma-bar), got {total!r}")

    def denoiser(x: Tensor) -> Tensor:
        sigma = torch.full((x.shape[0],), float(total), dtype=torch.float64, device=x.device)
        log_score = score_network(x, sigma)
        return torch.log_softmax(log_score[..., :-1], dim=-1)

    if states is not None:
        denoiser.vocab_size = states - 1  # type: ignore[attr-defined]
    return denoiser
