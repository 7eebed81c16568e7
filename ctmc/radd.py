"""RADD's factorisation of the absorbing chain's concrete score (Ou et al. 2024).

At a masked position i of x_t, for every clean token y,

    s(x_t, t)_{i, y} = p_t(x_t with x_t^i = y) / p_t(x_t) = r(sigma-bar) p(x0^i = y | unmasked part of x_t),
    r(sigma-bar) = e^{-sigma-bar} / (1 - e^{-sigma-bar}),

so a time-independent denoiser determines the score at every time. The reverse process only uses score
entries y with a non-zero forward rate Q[y, x_t]: the tokens at masked positions. The conversions therefore
fill the other entries by convention: the score of a state relative to itself is 1 (the mask column at masked
positions, the token's own column at unmasked ones) and every other entry is 0; the denoiser of an unmasked
position is the one-hot of its token (its clean value is known).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctmc.noise_ratio import log_mask_ratio


def _check(values: Tensor, x_t: Tensor, total: Tensor, width: int, name: str) -> None:
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (B, L, ...)")
    if x_t.dtype not in (torch.int64, torch.int32) or x_t.dim() != 2:
        raise TypeError(f"x_t must be a (B, L) integer tensor of state ids, got {x_t.dtype} {tuple(x_t.shape)}")
    if values.shape != (*x_t.shape, width):
        raise ValueError(
            f"{name} must have shape {(*x_t.shape, width)} (x_t.shape + ({width},)), got {tuple(values.shape)}"
        )
    if not isinstance(total, Tensor) or total.shape != x_t.shape[:1]:
        raise ValueError(f"total must be a (B,) tensor of sigma-bar(t), got {getattr(total, 'shape', None)}")
    if not bool((total > 0).all()) or not bool(torch.isfinite(total).all()):
        raise ValueError("total (sigma-bar) must be finite and > 0; at sigma-bar = 0 the ratio r is infinite")


def denoiser_to_score(log_probs: Tensor, x_t: Tensor, total: Tensor, log: bool = False) -> Tensor:
    """Concrete score from a clean-token denoiser: s_{i,y} = r(sigma-bar) p(x0^i = y | x_t) at masked positions.

    log_probs: (B, L, V) log p_theta(x0 | x_t); x_t: (B, L) in [0, V] (V is the mask); total: (B,) sigma-bar > 0.
    Returns (B, L, V + 1) scores (log-scores with -inf for the zero entries if log=True), filled as above.
    """
    vocab = log_probs.shape[-1]
    _check(log_probs, x_t, total, vocab, "log_probs")
    masked = (x_t == vocab)[..., None]
    log_r = log_mask_ratio(total.to(log_probs.dtype))[:, None, None]
    floor = torch.tensor(float("-inf") if log else 0.0, dtype=log_probs.dtype, device=log_probs.device)
    one = torch.tensor(0.0 if log else 1.0, dtype=log_probs.dtype, device=log_probs.device)
    tokens = log_probs + log_r if log else torch.exp(log_probs + log_r)
    tokens = torch.where(masked, tokens, floor)
    mask_column = torch.where(masked, one, floor)
    score = torch.cat([tokens, mask_column], dim=-1)
    return score.scatter(-1, x_t.long()[..., None], one.expand(*x_t.shape, 1))


def score_to_denoiser(score: Tensor, x_t: Tensor, total: Tensor, normalize: bool = False) -> Tensor:
    """Clean-token probabilities from a concrete score: p(x0^i = y | x_t) = s_{i,y} expm1(sigma-bar) if masked.

    score: (B, L, V + 1) non-negative; x_t: (B, L) in [0, V]; total: (B,) sigma-bar > 0.
    Returns (B, L, V): the inverse of `denoiser_to_score` at masked positions (renormalised over the V tokens
    if normalize=True, for a score that does not sum to r exactly), the one-hot of x_t elsewhere.
    """
    vocab = score.shape[-1] - 1
    _check(score, x_t, total, vocab + 1, "score")
    masked = (x_t == vocab)[..., None]
    probs = score[..., :vocab] * torch.expm1(total.to(score.dtype))[:, None, None]
    if normalize:
        probs = probs / probs.sum(-1, keepdim=True)
    probs = torch.where(masked, probs, torch.zeros((), dtype=score.dtype, device=score.device))
    kept = x_t.long().clamp(max=vocab - 1)[..., None]
    return probs.scatter_add(-1, kept, (~masked).to(score.dtype))
