"""The model-callable contract of the samplers: concrete scores and time-independent denoisers.

A sampler calls the network through one of two wrappers, which say what the callable returns:

- `ConcreteScore(fn)`: `fn(x, total) -> (B, L, n)` with s[b, i, y] ~ p_t(x with x_i = y) / p_t(x) (SEDD), where
  `total` is the total noise sigma-bar(t) of shape (B,) (docs/conventions.md: networks are conditioned on it).
- `Denoiser(fn)`: `fn(x) -> (B, L, V)` probabilities p(x_0^i = y | x_t) of the clean token at every position
  (RADD), for the absorbing chain; no time input.

With `log=True` the callable returns log-scores / log-probabilities instead (what `models.DiT` and
`models.RADDDenoiser` return). A bare callable is treated as `ConcreteScore(fn)`.

Outputs at chosen positions only (`positions=True`): the callable also takes a keyword `where`, a (B, L) bool,
and returns the PACKED rows (N, m) at `where.nonzero()` in row-major order, N = where.sum(), equal to its full
output at those positions. A sampler on the absorbing chain asks only for the masked positions (a clean token's
reverse rates are zero), the first-hitting and remasking samplers only for the positions they reveal. A callable
without the flag is called without `where` and its full output is selected at `where` afterwards: same values,
without the savings.

The RADD factorisation links them (Ou et al. 2024): at a masked position, for a clean token y,

    s[b, i, y] = e^{-sigma-bar} / (1 - e^{-sigma-bar}) * p(x_0^i = y | x_t) = p(x_0^i = y | x_t) / expm1(sigma-bar),

and `ctmc.denoiser_to_score` builds the full concrete score from a denoiser with it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Positions x states per chunk when a per-position statistic is computed from log-values (2^22 floats).
CHUNK_ELEMENTS = 1 << 22


def _check_evaluations(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"evaluations_per_row must be an int >= 1 (network rows per row asked), got {value!r}")
    return value


class ConcreteScore:
    """A concrete-score network s(x, sigma-bar) -> (B, L, n) (or its logarithm when `log=True`).

    fn: callable (x (B, L) long, total (B,) float) -> (B, L, n) non-negative scores; with `positions=True` it
    also takes `where=` (B, L) bool and then returns the packed rows (where.sum(), n) at where.nonzero().
    evaluations_per_row: network row-evaluations one row of a call costs, counted in NFE (2 for classifier-free
    guidance, whose one batched call evaluates every row twice: samplers.guidance).
    """

    time_independent = False

    def __init__(
        self, fn: Callable[..., Tensor], log: bool = False, positions: bool = False, evaluations_per_row: int = 1
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable (x, total) -> (B, L, n) scores, got {type(fn).__name__}")
        self.fn = fn
        self.log = bool(log)
        self.positions = bool(positions)
        self.evaluations_per_row = _check_evaluations(evaluations_per_row)

    def __call__(self, x: Tensor, total: Tensor, where: Tensor | None = None) -> Tensor:
        """(B, L, n) scores, or the packed rows (where.sum(), n) at `where` (B, L) bool when it is given."""
        if where is None:
            return self.fn(x, total)
        return self.fn(x, total, where=where) if self.positions else self.fn(x, total)[where]

    def __repr__(self) -> str:
        return f"ConcreteScore({self.fn!r}, log={self.log}, positions={self.positions})"


class Denoiser:
    """A time-independent denoiser p(x_0 | x_t): fn(x (B, L) long in [0, V]) -> (B, L, V) (log-)probabilities.

    Only for the absorbing chain, whose concrete score factorises into it (RADD); see `ctmc.denoiser_to_score`.
    With `positions=True`, fn also takes `where=` (B, L) bool and returns the packed rows (where.sum(), V).
    evaluations_per_row: as for `ConcreteScore`.
    """

    time_independent = True

    def __init__(
        self, fn: Callable[..., Tensor], log: bool = False, positions: bool = False, evaluations_per_row: int = 1
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable x -> (B, L, V) clean-token probabilities, got {type(fn).__name__}")
        self.fn = fn
        self.log = bool(log)
        self.positions = bool(positions)
        self.evaluations_per_row = _check_evaluations(evaluations_per_row)

    def __call__(self, x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        """(B, L, V) probabilities, or the packed rows (where.sum(), V) at `where` (B, L) bool when it is given."""
        if where is None:
            return self.fn(x)
        return self.fn(x, where=where) if self.positions else self.fn(x)[where]

    def __repr__(self) -> str:
        return f"Denoiser({self.fn!r}, log={self.log}, positions={self.positions})"


Model = ConcreteScore | Denoiser


def network_model(network: Callable[..., Tensor], output_kind: str) -> Model:
    """A network of this toolkit wrapped for the samplers by what its loss trained it to output.

    network: called as network(x, total) or, when its forward takes `where`, network(x, total, where=where)
    (packed rows; models.DiT, models.RADDDenoiser). output_kind: "log_score" (a concrete-score network read at
    the total noise sigma-bar: `ConcreteScore(log=True)`) or "log_probs" (a clean-token denoiser:
    `Denoiser(log=True)`; `total` is passed and ignored).
    """
    forward = getattr(network, "forward", network)
    positions = "where" in inspect.signature(forward).parameters

    def call(x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        return network(x, total) if where is None else network(x, total, where=where)

    if output_kind == "log_score":
        return ConcreteScore(call, log=True, positions=positions)
    if output_kind == "log_probs":
        return Denoiser(call, log=True, positions=positions)
    raise ValueError(
        f"output_kind {output_kind!r}: no sampler takes this output; the samplers take concrete scores (log_score) "
        "and clean-token denoisers (log_probs)"
    )


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

    values: (B, L, m) when `where` is None, else the packed rows (N, m) at `where.nonzero()` (row-major),
    N = where.sum(); non-negative, or their logarithms when `log` is True (exponentiated only a chunk of rows
    or the selected rows at a time, never as a whole). For a ConcreteScore m = n and the concrete score is the
    values; for a Denoiser m = V and the concrete score over clean tokens at a masked position is
    `scale[b] * values`, with `scale = 1 / expm1(sigma-bar)` (RADD); `scale` is None for a ConcreteScore.
    total: (B,) sigma-bar; where: (B, L) bool or None (every position).
    """

    values: Tensor
    scale: Tensor | None
    total: Tensor
    where: Tensor | None = None
    log: bool = False
    _index: Tensor | None = field(default=None, init=False, repr=False)

    @property
    def packed(self) -> Tensor:
        """(N, m): the rows of `values` in row-major order of the positions they belong to."""
        return self.values.reshape(-1, self.values.shape[-1])

    def positions(self, x: Tensor) -> Tensor:
        """(B, L) bool: the positions that have an output (`where`, or every position of x)."""
        return self.where if self.where is not None else torch.ones_like(x, dtype=torch.bool)

    def rows(self, selected: Tensor) -> Tensor:
        """The non-negative values at the selected positions: selected (B, L) bool within `where`; returns
        (k, m) in the row-major order of `selected`, exponentiated (if log) for these k rows only."""
        if self.where is None:
            picked = self.values[selected]
        else:
            if self._index is None:
                flat = self.where.flatten()
                self._index = torch.where(flat, flat.cumsum(0) - 1, -1)
            index = self._index[selected.flatten()]
            if index.numel() and int(index.min()) < 0:
                raise ValueError("rows(selected) asked for positions without an output; selected must lie in where")
            picked = self.values.index_select(0, index)
        return picked.exp() if self.log else picked

    def statistic(self, function: Callable[..., Tensor], x: Tensor, *aligned: Tensor) -> Tensor:
        """A per-position statistic: (B, L) float64, function(x_k (k,), values_k (k, m) non-negative, scale_k
        (k,) or None, *aligned_k (k,)) on chunks of rows of the output, 0 at positions outside `where`.

        x: (B, L) long, the state the model was evaluated at; aligned: tensors broadcastable to (B, L).
        With log-values one chunk (CHUNK_ELEMENTS entries) is exponentiated at a time.
        """
        inside = self.positions(x)
        rows = self.packed
        picked_x = x[inside]
        extra = self._pick(x, inside, aligned)
        out = torch.zeros(rows.shape[0], dtype=torch.float64, device=x.device)
        size = max(1, CHUNK_ELEMENTS // max(rows.shape[-1], 1))
        for start in range(0, rows.shape[0], size):
            part = slice(start, start + size)
            chunk = rows[part].exp() if self.log else rows[part]
            out[part] = function(picked_x[part], chunk, *[e if e is None else e[part] for e in extra])
        if self.where is None:
            return out.view(x.shape)
        full = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        full[inside] = out
        return full

    def row_function(
        self, function: Callable[..., Tensor], x: Tensor, selected: Tensor, width: int, *aligned: Tensor
    ) -> Tensor:
        """function(x_k, values_k, scale_k, *aligned_k) -> (k, width) at the selected (B, L) positions, in their
        row-major order; a selected position outside `where` gets a row of zeros (the sampler asked only for
        the positions whose rows can be non-zero)."""
        inside = selected & self.where if self.where is not None else selected
        values = function(x[inside], self.rows(inside), *self._pick(x, inside, aligned))
        if self.where is None or bool(torch.equal(inside, selected)):
            return values
        out = values.new_zeros(int(selected.sum()), width)
        out[inside[selected]] = values
        return out

    def _pick(self, x: Tensor, inside: Tensor, aligned: tuple[Tensor, ...]) -> list[Tensor | None]:
        """[scale, *aligned] at the positions `inside` (k,); scale None for a concrete score."""
        scale = None if self.scale is None else self.scale[:, None]
        return [None if a is None else a.expand(x.shape)[inside] for a in (scale, *aligned)]

    def clean_scores(self, vocab_size: int) -> tuple[Tensor, Tensor]:
        """(weights (B, L, V), scale (B,)) of a full output: the concrete score over clean tokens is
        scale[b] * weights. Builds a (B, L, V) tensor for log-values; the samplers use `rows` instead."""
        if self.where is not None:
            raise ValueError("clean_scores needs a full (B, L, m) output; use rows(selected) on a packed output")
        weights = self.values[..., :vocab_size]
        weights = weights.exp() if self.log else weights
        scale = self.scale if self.scale is not None else torch.ones_like(self.total)
        return weights, scale


def evaluate(model: Model, x: Tensor, total: Tensor, expected: int, where: Tensor | None = None) -> ModelOutput:
    """Call the model, check its output (shape, no NaN, finite / < +inf for log-values, >= 0) and wrap it.

    x: (B, L) long; total: (B,) sigma-bar; where: None (every position) or (B, L) bool: only these positions'
    rows are asked for (the network computes only them if it supports `positions`, else its full output is
    selected). The check is one reduction over the rows kept (max of log-values; min and max of values).
    Raises ValueError naming the rule broken and the fix.
    """
    packed_call = where is not None and model.positions
    raw = model(x, total, where) if packed_call else model(x, total)
    kind = type(model).__name__
    if not isinstance(raw, Tensor) or not raw.is_floating_point():
        raise TypeError(f"the {kind} model must return a floating tensor, got {type(raw).__name__}")
    what = "n states" if isinstance(model, ConcreteScore) else "V clean tokens"
    if packed_call:
        shape, rule = (int(where.sum()), expected), f"(where.sum(), {what}) packed rows at where.nonzero()"
    else:
        shape, rule = (*x.shape, expected), f"(B, L, {what})"
    if raw.shape != shape:
        raise ValueError(f"the {kind} model returned shape {tuple(raw.shape)}, expected {shape} {rule}")
    if where is not None and not packed_call:
        raw = raw[where]
    _check_values(raw, model.log, kind)
    scale = 1.0 / torch.expm1(total.to(raw.dtype)) if isinstance(model, Denoiser) else None
    return ModelOutput(values=raw, scale=scale, total=total, where=where, log=model.log)


def _check_values(raw: Tensor, log: bool, kind: str) -> None:
    """One reduction: NaN propagates through max and min, +inf is the max, a negative value (or -inf) the min."""
    if raw.numel() == 0:
        return
    if log:
        largest = float(raw.amax())
        if math.isnan(largest) or largest == math.inf:
            raise ValueError(f"the {kind} model returned nan or +inf log-values; log-scores must be < +inf")
        return
    smallest, largest = (float(v) for v in torch.aminmax(raw))
    if math.isnan(largest) or math.isinf(largest) or math.isinf(smallest):
        raise ValueError(f"the {kind} model returned non-finite values; pass log=True if it returns logs")
    if smallest < 0:
        raise ValueError(
            f"the {kind} model returned negative values (min {smallest:.3g}); scores and probabilities must be "
            f">= 0 (pass log=True if the network returns log-values)"
        )
