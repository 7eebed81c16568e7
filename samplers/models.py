"""The model-callable contract of the samplers: concrete scores and time-independent denoisers.

A sampler calls the network through one of two wrappers, which say what the callable returns:

- `ConcreteScore(fn)`: `fn(x, total) -> (B, L, n)` with s[b, i, y] ~ p_t(x with x_i = y) / p_t(x) (SEDD), where
  `total` is the total noise sigma-bar(t) of shape (B,) (docs/conventions.md: networks are conditioned on it).
- `Denoiser(fn)`: `fn(x) -> (B, L, V)` probabilities p(x_0^i = y | x_t) of the clean token at every position
  (RADD), for the absorbing chain; no time input.
- `X0Predictor(fn)`: `fn(x, total) -> (B, L, m)` a time-dependent prediction p_theta(x_0^i | x_t) over the chain's
  n states or its clean tokens (D3PM, MDLM), for every chain: the sampler turns it into a concrete score through
  the chain's posterior (`ctmc.RateMatrix.score_from_posterior`, or `marginal_score` with `form="d3pm"`).

With `log=True` the callable returns log-scores / log-probabilities instead (what `models.DiT` and
`models.RADDDenoiser` return; for an `X0Predictor`, logits). A bare callable is treated as `ConcreteScore(fn)`.

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

import ctmc
from ctmc.checks import check_int

# Positions x states per chunk when a per-position statistic is computed from log-values (2^22 floats).
CHUNK_ELEMENTS = 1 << 22


def _check_evaluations(value: int) -> int:
    return check_int("evaluations_per_row", value, 1, "it counts the network rows one asked row costs")


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


X0_FORMS = ("posterior", "d3pm")


class X0Predictor:
    """A time-dependent x0-prediction p_theta(x0 | x_t): fn(x (B, L) long, total (B,) float) -> (B, L, m) logits
    (`log=True`) or probabilities, m = n (the chain's states) or num_clean_states (the clean tokens).

    Each position's output is normalised (softmax of logits; probabilities divided by their sum) and turned into
    a concrete score through the chain's posterior, per chunk of positions (never a B x L x n float64 copy):

    - form="posterior" (default; MDLM, Campbell et al. 2022): p is the posterior marginal p(x0^i | x_t) (a network
      trained by cross-entropy on x0), s_y = sum_{x0} p(x0) P(x0, y) / P(x0, x)
      (`ctmc.RateMatrix.score_from_posterior`); exact for the exact posterior.
    - form="d3pm": D3PM's parameterisation (Austin et al. 2021, eq. 4), p_theta(x_s | x_t) proportional to
      sum_{x0} q(x_s, x_t | x0) p(x0): s_y = (p P)_y / (p P)_x (`ctmc.RateMatrix.marginal_score`), so that the
      analytic (Tweedie) step is D3PM's reverse step; for a network trained with `losses.D3PMLoss`. The two
      forms coincide at the masks of the absorbing chain when p gives the mask no mass.

    The first-hitting and remasking samplers draw a revealed token from p itself (its clean tokens).
    With `positions=True`, fn also takes `where=` (B, L) bool and returns the packed rows (where.sum(), m).
    evaluations_per_row: as for `ConcreteScore`.
    """

    time_independent = False

    def __init__(
        self, fn: Callable[..., Tensor], log: bool = False, positions: bool = False, form: str = "posterior",
        evaluations_per_row: int = 1,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable (x, total) -> (B, L, m) x0 logits or probabilities, got {fn!r}")
        if form not in X0_FORMS:
            raise ValueError(
                f"form must be one of {X0_FORMS}, got {form!r}: 'posterior' for a network trained by cross-entropy "
                "on x0, 'd3pm' for one trained with losses.D3PMLoss"
            )
        self.fn = fn
        self.log = bool(log)
        self.positions = bool(positions)
        self.form = form
        self.evaluations_per_row = _check_evaluations(evaluations_per_row)

    def __call__(self, x: Tensor, total: Tensor, where: Tensor | None = None) -> Tensor:
        """(B, L, m) logits or probabilities, or the packed rows (where.sum(), m) at `where` when it is given."""
        if where is None:
            return self.fn(x, total)
        return self.fn(x, total, where=where) if self.positions else self.fn(x, total)[where]

    def score_function(self, rate_matrix: ctmc.RateMatrix) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """(x (k,), probs (k, m), total (k,)) -> (k, n) concrete-score rows: the chain's method of this form."""
        return rate_matrix.score_from_posterior if self.form == "posterior" else rate_matrix.marginal_score

    def __repr__(self) -> str:
        return f"X0Predictor({self.fn!r}, log={self.log}, positions={self.positions}, form={self.form!r})"


Model = ConcreteScore | Denoiser | X0Predictor


def network_model(network: Callable[..., Tensor], output_kind: str) -> Model:
    """A network of this toolkit wrapped for the samplers by what its loss trained it to output.

    network: called as network(x, total) or, when its forward takes `where`, network(x, total, where=where)
    (packed rows; models.DiT, models.RADDDenoiser). output_kind: "log_score" (a concrete-score network read at
    the total noise sigma-bar: `ConcreteScore(log=True)`), "log_probs" (a clean-token denoiser: `Denoiser(log=True)`;
    `total` is passed and ignored) or "x0_logits" (D3PM's x0 logits at sigma-bar: `X0Predictor(log=True,
    form="d3pm")`, reverse rates through the chain's posterior).
    """
    forward = getattr(network, "forward", network)
    positions = "where" in inspect.signature(forward).parameters

    def call(x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        return network(x, total) if where is None else network(x, total, where=where)

    if output_kind == "log_score":
        return ConcreteScore(call, log=True, positions=positions)
    if output_kind == "log_probs":
        return Denoiser(call, log=True, positions=positions)
    if output_kind == "x0_logits":
        return X0Predictor(call, log=True, positions=positions, form="d3pm")
    raise ValueError(
        f"output_kind {output_kind!r}: no sampler takes this output; the samplers take concrete scores (log_score), "
        "clean-token denoisers (log_probs) and D3PM's x0 logits (x0_logits)"
    )


def as_model(model: object) -> Model:
    """Wrap a bare callable as a `ConcreteScore`; pass `ConcreteScore`, `Denoiser` and `X0Predictor` through."""
    if isinstance(model, (ConcreteScore, Denoiser, X0Predictor)):
        return model
    if callable(model):
        return ConcreteScore(model)
    raise TypeError(
        f"model must be a callable score(x, total), or samplers.ConcreteScore / samplers.Denoiser / "
        f"samplers.X0Predictor, got {type(model).__name__}"
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
    posterior: for an X0Predictor, (x (k,), probs (k, m), total (k,)) -> (k, n) concrete-score rows (the chain's
    method, `X0Predictor.score_function`); the values are then logits (log) or probabilities of x0, `rows` gives
    them normalised, and `statistic` and `row_function` hand the chain's functions the score rows, one chunk
    at a time. None for a score or a denoiser.
    """

    values: Tensor
    scale: Tensor | None
    total: Tensor
    where: Tensor | None = None
    log: bool = False
    posterior: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
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
        (k, m) in the row-major order of `selected`, exponentiated (if log) for these k rows only; for an
        x0-prediction, its probabilities (float64, normalised per row)."""
        return self._nonnegative(self._raw_rows(selected))

    def _raw_rows(self, selected: Tensor) -> Tensor:
        """The stored rows (k, m) at the selected positions, as the network gave them."""
        if self.where is None:
            return self.values[selected]
        if self._index is None:
            flat = self.where.flatten()
            self._index = torch.where(flat, flat.cumsum(0) - 1, -1)
        index = self._index[selected.flatten()]
        if index.numel() and int(index.min()) < 0:
            raise ValueError("rows(selected) asked for positions without an output; selected must lie in where")
        return self.values.index_select(0, index)

    def _nonnegative(self, raw: Tensor) -> Tensor:
        """exp of log-values; an x0-prediction's rows normalised (softmax of logits, or divided by their sum)."""
        if self.posterior is not None:
            if self.log:
                return torch.softmax(raw.double(), -1)
            raw = raw.double()
            return raw / raw.sum(-1, keepdim=True)
        return raw.exp() if self.log else raw

    def _values(self, x: Tensor, raw: Tensor, total: Tensor | None) -> Tensor:
        """What a chain's function reads for rows raw (k, m) at states x (k,): the non-negative values, or for an
        x0-prediction the concrete-score rows (k, n) of its probabilities at total noise total (k,)."""
        values = self._nonnegative(raw)
        return values if self.posterior is None else self.posterior(x, values, total)

    def _totals(self, x: Tensor, inside: Tensor) -> Tensor | None:
        """sigma-bar at the positions `inside` (k,), for an x0-prediction's posterior; None otherwise."""
        return None if self.posterior is None else self.total[:, None].expand(x.shape)[inside]

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
        totals = self._totals(x, inside)
        out = torch.zeros(rows.shape[0], dtype=torch.float64, device=x.device)
        size = max(1, CHUNK_ELEMENTS // max(rows.shape[-1], 1))
        for start in range(0, rows.shape[0], size):
            part = slice(start, start + size)
            chunk = self._values(picked_x[part], rows[part], None if totals is None else totals[part])
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
        picked = x[inside]
        values = self._values(picked, self._raw_rows(inside), self._totals(x, inside))
        values = function(picked, values, *self._pick(x, inside, aligned))
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
        if self.posterior is not None:
            raise ValueError("clean_scores reads a score or a denoiser; an x0-prediction's score is per chunk")
        weights = self.values[..., :vocab_size]
        weights = weights.exp() if self.log else weights
        scale = self.scale if self.scale is not None else torch.ones_like(self.total)
        return weights, scale


def evaluate(
    model: Model,
    x: Tensor,
    total: Tensor,
    expected: int | tuple[int, ...],
    where: Tensor | None = None,
    rate_matrix: ctmc.RateMatrix | None = None,
) -> ModelOutput:
    """Call the model, check its output (shape, no NaN, finite / < +inf for log-values, >= 0) and wrap it.

    x: (B, L) long; total: (B,) sigma-bar; expected: the output width, or the widths allowed (an X0Predictor's
    n or num_clean_states); where: None (every position) or (B, L) bool: only these positions'
    rows are asked for (the network computes only them if it supports `positions`, else its full output is
    selected); rate_matrix: the chain, needed by an X0Predictor (its posterior). The check is one reduction over
    the rows kept (max of log-values; min and max of values), plus one per row for an X0Predictor (some mass).
    Raises ValueError naming the rule broken and the fix.
    """
    packed_call = where is not None and model.positions
    raw = model(x, total, where) if packed_call else model(x, total)
    kind = type(model).__name__
    if not isinstance(raw, Tensor) or not raw.is_floating_point():
        raise TypeError(f"the {kind} model must return a floating tensor, got {type(raw).__name__}")
    widths = expected if isinstance(expected, tuple) else (expected,)
    what = {ConcreteScore: "n states", Denoiser: "V clean tokens"}.get(type(model), "n states or clean tokens")
    leading = (int(where.sum()),) if packed_call else tuple(x.shape)
    rule = f"(where.sum(), {what}) packed rows at where.nonzero()" if packed_call else f"(B, L, {what})"
    if raw.shape[:-1] != leading or raw.shape[-1:] not in [(w,) for w in widths]:
        expected_shapes = " or ".join(str((*leading, w)) for w in widths)
        raise ValueError(f"the {kind} model returned shape {tuple(raw.shape)}, expected {expected_shapes} {rule}")
    if where is not None and not packed_call:
        raw = raw[where]
    _check_values(raw, model.log, kind)
    scale = 1.0 / torch.expm1(total.to(raw.dtype)) if isinstance(model, Denoiser) else None
    posterior = None
    if isinstance(model, X0Predictor):
        if rate_matrix is None:
            raise ValueError("an X0Predictor needs the chain: pass rate_matrix (its posterior gives the score)")
        _check_mass(raw, model.log)
        posterior = model.score_function(rate_matrix)
    return ModelOutput(values=raw, scale=scale, total=total, where=where, log=model.log, posterior=posterior)


def _check_mass(raw: Tensor, log: bool) -> None:
    """Every row of an x0-prediction must give some state positive probability (else it cannot be normalised)."""
    if raw.numel() == 0:
        return
    smallest = float(raw.amax(-1).min()) if log else float(raw.sum(-1).min())
    if smallest == (-math.inf if log else 0.0):
        raise ValueError(
            "the X0Predictor model returned a row with no mass (all logits -inf, or all probabilities 0); every "
            "position needs a distribution over x0"
        )


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
