"""The model-callable contract of the samplers: concrete scores and time-independent denoisers.

A sampler calls the network through one of two wrappers, which say what the callable returns:

- `ConcreteScore(fn)`: `fn(x, total) -> (B, L, n)` with s[b, i, y] ~ p_t(x with x_i = y) / p_t(x) (SEDD), where
  `total` is the total noise sigma-bar(t) of shape (B,) (docs/conventions.md: networks are conditioned on it).
- `Denoiser(fn)`: `fn(x) -> (B, L, V)` probabilities p(x_0^i = y | x_t) of the clean token at every position
  (RADD), for the absorbing chain; no time input.

With `log=True` the callable returns log-scores / log-probabilities instead (what `models.DiT` and
`models.RADDDenoiser` return). A bare callable is treated as `ConcreteScore(fn)`.

The RADD factorisation links them (Ou et al. 2024): at a masked position, for a clean token y,

    s[b, i, y] = e^{-sigma-bar} / (1 - e^{-sigma-bar}) * p(x_0^i = y | x_t) = p(x_0^i = y | x_t) / expm1(sigma-bar),

and `ctmc.denoiser_to_score` builds the full concrete score from a denoiser with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class ConcreteScore:
    """A concrete-score network s(x, sigma-bar) -> (B, L, n) (or its logarithm when `log=True`).

    fn: callable (x (B, L) long, total (B,) float) -> (B, L, n) non-negative scores.
    """

    time_independent = False

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], log: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable (x, total) -> (B, L, n) scores, got {type(fn).__name__}")
        self.fn = fn
        self.log = bool(log)

    def __call__(self, x: Tensor, total: Tensor) -> Tensor:
        return self.fn(x, total)

    def __repr__(self) -> str:
        return f"ConcreteScore({self.fn!r}, log={self.log})"


class Denoiser:
    """A time-independent denoiser p(x_0 | x_t): fn(x (B, L) long in [0, V]) -> (B, L, V) (log-)probabilities.

    Only for the absorbing chain, whose concrete score factorises into it (RADD); see `ctmc.denoiser_to_score`.
    """

    time_independent = True

    def __init__(self, fn: Callable[[Tensor], Tensor], log: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable x -> (B, L, V) clean-token probabilities, got {type(fn).__name__}")
        self.fn = fn
        self.log = bool(log)

    def __call__(self, x: Tensor, total: Tensor | None = None) -> Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Denoiser({self.fn!r}, log={self.log})"


Model = ConcreteScore | Denoiser


def as_model(model: object) -> Model:
    """Wrap a bare callable as a `ConcreteScore`; pass `ConcreteScore` and `Denoiser` through."""
    if isinstance(model, (ConcreteScore, Denoiser)):
        return model
    if callable(model):
        return ConcreteScore(model)
    raise TypeError(
        f"model must be a callable score(x, total), or samplers.ConcreteScore / samplers.Denoiser, "
        f"got {type(model).__name__}"
    )


@dataclass
class ModelOutput:
    """One network evaluation, kept in the form the network gave it (never expanded to a dense score).

    values: (B, L, m) non-negative. For a ConcreteScore m = n and the concrete score is `values`; for a
    Denoiser m = V and the concrete score over clean tokens at a masked position is `scale[b] * values`, with
    `scale = 1 / expm1(sigma-bar)` (RADD); `scale` is None for a ConcreteScore.
    """

    values: Tensor
    scale: Tensor | None
    total: Tensor

    def clean_scores(self, vocab_size: int) -> tuple[Tensor, Tensor]:
        """(weights (B, L, V), scale (B,)): the concrete score over clean tokens is scale[b] * weights."""
        weights = self.values[..., :vocab_size]
        scale = self.scale if self.scale is not None else torch.ones_like(self.total)
        return weights, scale


def evaluate(model: Model, x: Tensor, total: Tensor, expected: int) -> ModelOutput:
    """Call the model, check its output (shape (B, L, expected), finite, >= 0) and wrap it.

    x: (B, L) long; total: (B,) sigma-bar. Raises ValueError naming the rule broken and the fix.
    """
    raw = model(x, total)
    kind = type(model).__name__
    if not isinstance(raw, Tensor) or not raw.is_floating_point():
        raise TypeError(f"the {kind} model must return a floating tensor, got {type(raw).__name__}")
    if raw.shape != (*x.shape, expected):
        raise ValueError(
            f"the {kind} model returned shape {tuple(raw.shape)}, expected {(*x.shape, expected)} "
            f"(B, L, {'n states' if isinstance(model, ConcreteScore) else 'V clean tokens'})"
        )
    if model.log:
        if bool(torch.isnan(raw).any()) or bool((raw == float("inf")).any()):
            raise ValueError(f"the {kind} model returned nan or +inf log-values; log-scores must be < +inf")
        values = raw.exp()
    else:
        if not bool(torch.isfinite(raw).all()):
            raise ValueError(f"the {kind} model returned non-finite values; pass log=True if it returns logs")
        if bool((raw < 0).any()):
            raise ValueError(
                f"the {kind} model returned negative values (min {raw.min().item():.3g}); scores and "
                f"probabilities must be >= 0 (pass log=True if the network returns log-values)"
            )
        values = raw
    scale = 1.0 / torch.expm1(total.to(values.dtype)) if isinstance(model, Denoiser) else None
    return ModelOutput(values=values, scale=scale, total=total)
