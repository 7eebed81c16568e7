"""The rate matrix interface and the validation of generators.

Convention (see docs/conventions.md): row convention. `Q[i, j]` (i != j) is the rate of jumps from state i to
state j, `Q[i, i] = -sum_{j != i} Q[i, j]` so every row sums to zero, the transition matrix solves the forward
Kolmogorov equation P'(t) = P(t) Q with P(0) = I, hence P(t) = exp(tQ), and a distribution is a row vector
propagated as p_t = p_0 P(t). Here `t` is the *integrated* time of a homogeneous chain; a noise schedule maps
diffusion time in [0, 1] to it (`ctmc.ForwardProcess`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ctmc.categorical import sample_categorical
from ctmc.checks import as_time, broadcast_time, check_distribution, check_states
from ctmc.row_reductions import logsumexp_statistics


def validate_generator(matrix: Tensor, name: str = "matrix", atol: float | None = None) -> Tensor:
    """Check that `matrix` is a valid row-convention generator and return it.

    Rules: a square 2-d floating tensor, finite, off-diagonal entries >= 0, every row summing to 0 within
    `atol` (default: 1e-8 (float64) or 1e-5 (float32) times max(1, max |Q|) times n).
    """
    if not isinstance(matrix, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if not matrix.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {matrix.dtype}; use {name}.double()")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square 2-d tensor (n, n), got shape {tuple(matrix.shape)}")
    n = matrix.shape[0]
    if n < 2:
        raise ValueError(f"{name} must have at least 2 states, got {n}")
    if not bool(torch.isfinite(matrix).all()):
        i, j = torch.nonzero(~torch.isfinite(matrix))[0].tolist()
        raise ValueError(f"{name} must be finite, but {name}[{i}, {j}] = {matrix[i, j].item()}")
    off = matrix.masked_fill(torch.eye(n, dtype=torch.bool, device=matrix.device), 0.0)
    if bool((off < 0).any()):
        i, j = torch.nonzero(off < 0)[0].tolist()
        raise ValueError(
            f"{name} off-diagonal entries are jump rates and must be >= 0, but {name}[{i}, {j}] = "
            f"{matrix[i, j].item():.6g}"
        )
    if atol is None:
        base = 1e-8 if matrix.dtype == torch.float64 else 1e-5
        atol = base * max(1.0, matrix.abs().max().item()) * n
    sums = matrix.sum(dim=1)
    if bool((sums.abs() > atol).any()):
        i = int(torch.argmax(sums.abs()))
        col_ok = bool((matrix.sum(dim=0).abs() <= atol).all())
        hint = (
            " Its columns sum to zero: it follows the column convention (dp/dt = Q p); "
            "convert it with ctmc.from_column_convention."
            if col_ok
            else " Set the diagonal to minus the sum of the row's off-diagonal rates."
        )
        raise ValueError(
            f"{name} rows must sum to 0 (row convention: Q[i, j] is the rate from i to j), but row {i} "
            f"sums to {sums[i].item():.6g}.{hint}"
        )
    return matrix


def from_column_convention(matrix: Tensor) -> Tensor:
    """Convert a column-convention generator (dp/dt = Q p, columns sum to 0, Q[j, i] = rate i -> j).

    Returns the row-convention generator Q^T (rows sum to 0, Q[i, j] = rate i -> j), validated.
    Works on (..., n, n) by transposing the last two dimensions; validation is applied to 2-d input.
    """
    result = matrix.transpose(-1, -2)
    if result.dim() == 2:
        if isinstance(matrix, Tensor) and matrix.is_floating_point() and _rows_sum_to_zero(matrix):
            if not _rows_sum_to_zero(result):
                raise ValueError(
                    "matrix already follows the row convention (its rows sum to 0, its columns do not): "
                    "use it as it is, without from_column_convention"
                )
        validate_generator(result, name="matrix (after transposing from the column convention)")
    return result


def _rows_sum_to_zero(matrix: Tensor) -> bool:
    base = 1e-8 if matrix.dtype == torch.float64 else 1e-5
    atol = base * max(1.0, matrix.abs().max().item()) * matrix.shape[-1]
    return bool((matrix.sum(dim=-1).abs() <= atol).all())


def to_column_convention(matrix: Tensor) -> Tensor:
    """Convert a row-convention generator to the column convention (the transpose): dp/dt = Q^T p."""
    if matrix.dim() == 2:
        validate_generator(matrix)
    return matrix.transpose(-1, -2)


class RateMatrix(ABC):
    """A time-homogeneous generator Q on `num_states` states, P(t) = exp(tQ), and every chain-specific statistic
    that losses and samplers need (the protocol of docs/ctmc.md).

    Every method has a default here that is correct for any valid generator and goes through dense n x n
    matrices (fine for small n). Structured chains (Absorbing, Uniform, BirthDeath, Hybrid) override them with
    closed forms that never form an n x n or a B x L x n x n tensor. Every method is batched: `t` may have any
    leading shape, and `x` any shape that `t` broadcasts to. Callers outside `ctmc` ask the chain through these
    methods and never check its type.
    """

    num_states: int

    # ---- structure ----------------------------------------------------------------------------------------
    @property
    def num_clean_states(self) -> int:
        """How many values a clean (data) token may take: the states 0 .. num_clean_states - 1 (all, by default)."""
        return self.num_states

    @property
    def mask_index(self) -> int | None:
        """The index of the absorbing [MASK] state (the last state), or None for a chain without one."""
        return None

    # ---- capability flags: constant facts of a chain class, read by losses and samplers ----------------------
    ordinal: bool = False
    """Whether the states are ordered values (a jump y - x has a size: tau-leaping may sum jumps)."""
    exchangeable: bool = False
    """Whether Q is unchanged by every permutation of the clean states (Uniform, Absorbing, Hybrid): then a
    per-token statistic such as KL(P(t)[x, :] || pi) is the same for every clean x and one row gives all."""
    score_factorises: bool = False
    """Whether the concrete score at a masked position is 1 / expm1(sigma-bar) times the clean-data conditional
    p(x0^i = y | x_t) (RADD, Ou et al. 2024), so that a time-independent denoiser defines the score. True only for
    the pure absorbing chain."""
    score_entropy_checks_values: bool = False
    """Whether `score_entropy` refuses (ValueError) a NaN or +inf in every entry of log_score that it reads and
    gives an exact 0 gradient to every entry that it does not (the closed forms built on ctmc.row_reductions:
    Absorbing, Uniform, Hybrid). A loss then need not scan the whole output for such values first."""

    # ---- the generator and the transition ------------------------------------------------------------------
    @abstractmethod
    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """The generator Q as a dense (n, n) tensor, row convention."""

    @abstractmethod
    def _transition(self, t: Tensor) -> Tensor:
        """P(t) for a checked floating t of any shape; returns t.shape + (n, n) in t's dtype."""

    def transition(self, t: Tensor | float) -> Tensor:
        """P(t) = exp(tQ), the solution of P'(t) = P(t) Q = Q P(t) with P(0) = I.

        t: (...) float >= 0. Returns (..., n, n) in the dtype of t; row i is the law of x_t given x_0 = i.
        """
        return self._transition(as_time(t))

    def transition_from(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Rows of P(t) = exp(tQ) for the states in x: P(t)[x, :].

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns x.shape + (n,) in t's dtype.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._transition_from(x, t)

    def transition_to(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Columns of P(t) for the states in x: P(t)[:, x], i.e. entry y is P(x_t = x | x_0 = y).

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns x.shape + (n,) in t's dtype.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._transition_to(x, t)

    def propagate(self, p: Tensor, t: Tensor | float) -> Tensor:
        """Push a distribution forward: p P(t) (Kolmogorov forward equation for row vectors).

        p: (..., n) float; t: broadcastable to p.shape[:-1]. Returns (..., n) in the promoted dtype.
        """
        p = check_distribution(p, self.num_states)
        t = as_time(t)
        dtype = torch.promote_types(p.dtype, t.dtype)
        p, t = p.to(dtype), t.to(dtype)
        try:
            t = t.to(p.device).expand(p.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"t of shape {tuple(t.shape)} does not broadcast to p.shape[:-1] = {tuple(p.shape[:-1])}"
            ) from None
        return self._propagate(p, t)

    def sample(self, x: Tensor, t: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ P(t)[x, :] independently for every entry of x (categorical draw in float64).

        x: (...) long in [0, n); t: broadcastable to x.shape. Returns (...) long.
        """
        x = check_states(x, self.num_states)
        t = broadcast_time(x, as_time(t))
        return self._sample(x, t, generator)

    def outgoing_rates(self, x: Tensor) -> Tensor:
        """Rows of Q for the states in x: Q[x, :] (rates out of x; entry x is minus the exit rate).

        x: (...) long. Returns x.shape + (n,) float64.
        """
        return self._outgoing_rates(check_states(x, self.num_states))

    def incoming_rates(self, x: Tensor) -> Tensor:
        """Columns of Q for the states in x: Q[:, x] (entry y is the rate of jumps y -> x).

        x: (...) long. Returns x.shape + (n,) float64. This is the weight Q(y, x_t) of score entropy and the
        factor of the reverse rate R(x -> y) = Q(y, x) p_t(y) / p_t(x).
        """
        return self._incoming_rates(check_states(x, self.num_states))

    def exit_rate(self, x: Tensor) -> Tensor:
        """The total rate of leaving x, -Q[x, x] = sum_{y != x} Q[x, y]. x: (...) long. Returns (...) float64."""
        return self._exit_rate(check_states(x, self.num_states))

    def reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        """Whether x_t can follow x0 at a time t > 0: P(t)[x0, x_t] > 0 (a path of positive rates x0 -> x_t).

        x0, x_t: (...) long of one shape. Returns (...) bool.
        """
        return self._reachable(check_states(x0, self.num_states, "x0"), check_states(x_t, self.num_states, "x_t"))

    # ---- the limit law (the prior of the reverse process) ---------------------------------------------------
    def limit_law(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """pi = lim_{t -> inf} P(t)[x, :], the same for every start x: the row vector with pi Q = 0, sum 1.

        Returns (n,). Raises ValueError if the chain has several closed classes (then the limit depends on x).
        """
        return self._limit_law(torch.device(device) if device is not None else torch.device("cpu")).to(dtype)

    def sample_limit(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Independent draws from `limit_law` (the reverse process's x_1), by inverse CDF in float64.

        shape: the output shape, e.g. (B, L). Returns shape long. Never forms a (shape..., n) tensor.
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        return self._sample_limit(tuple(shape), generator, device)

    def prior_kl(self, x0: Tensor, total: Tensor | float) -> Tensor:
        """KL(P(total)[x0, :] || pi), the prior term of an ELBO at total noise `total` (inf if pi misses mass).

        x0: (...) long; total: broadcastable to x0.shape. Returns (...) float64.
        """
        x0 = check_states(x0, self.num_states, "x0")
        total = broadcast_time(x0, as_time(total, "total"), name="total")
        return self._prior_kl(x0, total.double())

    # ---- the reverse process from a concrete score ----------------------------------------------------------
    def reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None = None) -> Tensor:
        """sum_{y != x} Q[y, x] s_y: the rate of leaving x in the reverse chain, without the schedule's sigma(t).

        x: (...) long; score: x.shape + (m,) non-negative, m = n, or m = num_clean_states (the other states'
        entries are 0); scale: None or broadcastable to x.shape: the concrete score is scale * score (a
        denoiser's output with the RADD factor, without a copy). Returns (...) float64.
        """
        return self._reverse_exit_rate(x, self._check_score(x, score), scale)

    def reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None = None) -> Tensor:
        """R(x -> y) / sigma = Q[y, x] s_y for every y (0 at y = x): the jump destinations' weights.

        Shapes as `reverse_exit_rate`; returns x.shape + (n,) float64 whose rows sum to the exit rate. The
        samplers call it only on the positions that jump.
        """
        return self._reverse_rates_to(x, self._check_score(x, score), scale)

    def analytic_jump_probability(
        self, x: Tensor, score: Tensor, delta: Tensor, scale: Tensor | None = None
    ) -> Tensor:
        """The probability that the analytic reverse step over total noise delta leaves x (SEDD's Tweedie step):

            p(x_s = y | x_t = x) proportional to (s exp(-delta Q))_y P(delta)[y, x]   (clamped at 0, s_x = 1).

        x: (...) long; score and scale as `reverse_exit_rate`; delta: >= 0, x's number of dimensions, broadcastable
        to x.shape (e.g. (B, 1) against (B, L)).
        Returns (...) float64.
        """
        stay, moves = self._analytic(x, self._check_score(x, score), delta, scale)
        move_total = moves.sum(-1)
        return torch.where(move_total > 0, move_total / (move_total + stay), 0.0)

    def analytic_destinations(
        self, x: Tensor, score: Tensor, delta: Tensor, scale: Tensor | None = None
    ) -> Tensor:
        """The analytic step's unnormalised weights of every y != x (0 at y = x); shapes as
        `analytic_jump_probability`, returns x.shape + (n,) float64. Called only on the positions that jump."""
        return self._analytic(x, self._check_score(x, score), delta, scale)[1]

    # ---- the concrete score of an x0-prediction --------------------------------------------------------------
    def score_from_posterior(self, x: Tensor, probs: Tensor, total: Tensor) -> Tensor:
        """The concrete score of a clean-data posterior p(x0 | x_t) per position (Campbell et al. 2022; MDLM):

            s(x)_y = sum_{x0} p(x0 | x) P(total)[x0, y] / P(total)[x0, x],

        The sum runs over the x0 that can reach x (P(total)[x0, x] > 0), with p renormalised over them, so
        s(x)_x = 1; a position whose p has no mass there gets s = e_x (no reverse move). For the true posterior
        marginal p it is the true score at every y that can reach x (`reachable(y, x)`: the y with Q[y, x] > 0
        that the reverse rates read, and those the analytic step reads); elsewhere it misses the x0 that reach y
        but not x (e.g. the mask entry at a clean token of the absorbing chain).

        x: (...) long; probs: x.shape + (m,) non-negative, summing to 1, m = n or m = num_clean_states (the
        other states' entries are 0); total: sigma-bar > 0, x's number of dimensions, broadcastable to x.shape.
        Returns x.shape + (n,) float64.
        """
        return self._score_from_posterior(x, self._check_score(x, probs, "probs"), self._check_total(x, total))

    def marginal_score(self, x: Tensor, probs: Tensor, total: Tensor) -> Tensor:
        """The concrete score of the per-position law p P(total), D3PM's reading of an x0-prediction p (Austin et
        al. 2021, eq. 4: p_theta(x_s | x_t) proportional to sum_{x0} q(x_s, x_t | x0) p(x0 | x_t)):

            s(x)_y = (p P(total))_y / (p P(total))_x      (s = e_x where (p P(total))_x = 0).

        With it, the analytic (Tweedie) step over [s, t] is D3PM's posterior exactly. Shapes as
        `score_from_posterior`; structured through `propagate` (O(n) per position for Absorbing and Uniform).
        """
        probs = self._check_score(x, probs, "probs")
        total = self._check_total(x, total).double()
        law = self._propagate(self._padded(probs), total)
        here = law.gather(-1, x[..., None])
        score = torch.where(here > 0, law / torch.where(here > 0, here, 1.0), 0.0)
        return score.scatter(-1, x[..., None], 1.0)

    # ---- loss terms -------------------------------------------------------------------------------------------
    def score_entropy(self, log_score: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        """Per-position denoising score entropy without sigma(t) (Lou et al. 2024):

            l = sum_{y != x_t} Q[y, x_t] [r_y phi(log s_y - log r_y) if r_y > 0 else s_y],
            r_y = P(total)[x0, y] / P(total)[x0, x_t],  phi(u) = e^u - u - 1.

        log_score: (B, L, n) float; x0, x_t: (B, L) long (x_t reachable from x0); total: (B,) float64.
        Returns (B, L) in log_score's dtype; differentiable in log_score.
        """
        return self._score_entropy(log_score, x0, x_t, total)

    def posterior(self, x_t: Tensor, x0: Tensor, step: Tensor, before: Tensor) -> Tensor:
        """D3PM's posterior q(x_{s} = y | x_t, x0) proportional to P(step)[y, x_t] (x0 P(before))_y, where
        `before` is the total noise at the earlier time and `step` the noise between the two times.

        x_t: (...) long; x0: (...) long ids, or (..., n) float probabilities (the model posterior of D3PM's
        eq. 5); step, before: broadcastable to x_t.shape. Returns (..., n) in float64 (ids) or x0's dtype.
        """
        likelihood = self._transition_to(x_t, step.to(x0.dtype if x0.is_floating_point() else torch.float64))
        if x0.is_floating_point():
            prior = self._propagate(x0, before.to(x0.dtype))
        else:
            prior = self._transition_from(x0, before.double())
        joint = likelihood * prior
        return joint / joint.sum(-1, keepdim=True)

    def d3pm_terms(
        self, logits: Tensor, x0: Tensor, x_t: Tensor, step: Tensor, before: Tensor
    ) -> tuple[Tensor, Tensor]:
        """D3PM's per-position terms (Austin et al. 2021): (KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i))
        (B, L) float64, -log softmax(logits)[x0] (B, L) in logits' dtype), where p_theta(x_{i-1} | x_i) is the
        `posterior` of softmax(logits).

        logits: (B, L, n); x0, x_t: (B, L) long; step: (B, 1) the step's noise tau_i; before: (B, 1) the noise
        tau-bar_{i-1} of the steps before. The default forms three (B, L, n) float64 posteriors.
        """
        stats = logsumexp_statistics(logits, x0[..., None])
        true = self.posterior(x_t, x0, step.expand_as(x_t), before.expand_as(x_t))
        model = self.posterior(x_t, torch.softmax(logits.double(), dim=-1), step.expand_as(x_t), before.expand_as(x_t))
        support = true > 0
        log_model = torch.log(torch.where(support, model, 1.0))
        log_true = torch.log(torch.where(support, true, 1.0))
        kl = torch.where(support, true * (log_true - log_model), 0.0).sum(-1)
        return kl, stats.lse - stats.gathered[..., 0]

    # ---- dense defaults, overridden by structured subclasses -------------------------------------------------
    def _check_score(self, x: Tensor, score: Tensor, name: str = "score") -> Tensor:
        if score.shape[:-1] != x.shape or score.shape[-1] not in (self.num_states, self.num_clean_states):
            raise ValueError(
                f"{name} must have shape x.shape + (n,) or x.shape + (clean states,) = {tuple(x.shape)} + "
                f"({self.num_states},) or ({self.num_clean_states},), got {tuple(score.shape)}"
            )
        return score

    def _check_total(self, x: Tensor, total: Tensor) -> Tensor:
        if not isinstance(total, Tensor) or not total.is_floating_point() or total.dim() not in (0, x.dim()):
            raise ValueError(
                f"total must be a float tensor with x's number of dimensions ({x.dim()}), broadcastable to x.shape "
                f"{tuple(x.shape)}; for one time per sequence pass total[:, None]"
            )
        return total.expand(x.shape)

    def _padded(self, probs: Tensor) -> Tensor:
        """(..., n) float64: probs with zeros for the states beyond its width."""
        probs = probs.double()
        if probs.shape[-1] < self.num_states:
            probs = torch.nn.functional.pad(probs, (0, self.num_states - probs.shape[-1]))
        return probs

    def _dense_score(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        """The (..., n) float64 concrete score: score padded with zeros, times scale, and s_x = 1."""
        dense = score.double()
        if dense.shape[-1] < self.num_states:
            dense = torch.nn.functional.pad(dense, (0, self.num_states - dense.shape[-1]))
        if scale is not None:
            dense = dense * scale.double()[..., None]
        return dense.scatter(-1, x[..., None], 1.0)

    def _transition_from(self, x: Tensor, t: Tensor) -> Tensor:
        index = x[..., None, None].expand(*x.shape, 1, self.num_states)
        return self._transition(t).gather(-2, index).squeeze(-2)

    def _transition_to(self, x: Tensor, t: Tensor) -> Tensor:
        index = x[..., None, None].expand(*x.shape, self.num_states, 1)
        return self._transition(t).gather(-1, index).squeeze(-1)

    def _propagate(self, p: Tensor, t: Tensor) -> Tensor:
        transition = self._transition(t)
        return (p[..., None, :].to(transition.dtype) @ transition).squeeze(-2)

    def _sample(self, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
        return sample_categorical(self._transition_from(x, t), generator, check=False)

    def _outgoing_rates(self, x: Tensor) -> Tensor:
        return self.matrix(device=x.device)[x]

    def _incoming_rates(self, x: Tensor) -> Tensor:
        return self.matrix(device=x.device).T[x]

    def _exit_rate(self, x: Tensor) -> Tensor:
        return -torch.diagonal(self.matrix(device=x.device))[x]

    def _reachable(self, x0: Tensor, x_t: Tensor) -> Tensor:
        # Transitive closure of the jump graph (edges where Q[i, j] > 0, plus self loops) by repeated squaring.
        q = self.matrix(device=x0.device)
        step = ((q > 0) | torch.eye(self.num_states, dtype=torch.bool, device=q.device)).double()
        for _ in range(max(1, (self.num_states - 1).bit_length())):
            step = ((step @ step) > 0).double()
        return step[x0, x_t] > 0

    def _limit_law(self, device: torch.device) -> Tensor:
        q = self.matrix(device=device)
        _, values, vectors = torch.linalg.svd(q.T)
        scale = max(1.0, q.abs().max().item())
        null = values <= 1e-10 * scale * self.num_states
        if int(null.sum()) != 1:
            raise ValueError(
                f"{self!r} has {int(null.sum())} closed classes, so its limit law depends on the start state; "
                "a prior needs a chain with one closed class"
            )
        law = vectors[-1].abs()
        return law / law.sum()

    def _sample_limit(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        cdf = self._limit_law(device).double().cumsum(0)
        total = cdf[-1:]
        u = torch.rand(shape, dtype=torch.float64, device=device, generator=generator)
        target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
        return torch.searchsorted(cdf, target.flatten(), right=True).view(shape)

    def _prior_kl(self, x0: Tensor, total: Tensor) -> Tensor:
        rows = self._transition_from(x0, total)
        log_law = torch.log(self._limit_law(x0.device))
        terms = torch.where(rows > 0, rows * (torch.log(torch.where(rows > 0, rows, 1.0)) - log_law), 0.0)
        return terms.sum(-1)

    def _reverse_exit_rate(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        return self._reverse_rates_to(x, score, scale).sum(-1)

    def _reverse_rates_to(self, x: Tensor, score: Tensor, scale: Tensor | None) -> Tensor:
        rates = self._incoming_rates(x) * self._dense_score(x, score, scale)
        return rates.scatter(-1, x[..., None], 0.0)

    def _analytic(self, x: Tensor, score: Tensor, delta: Tensor, scale: Tensor | None) -> tuple[Tensor, Tensor]:
        """(stay (...), moves (..., n)): the analytic step's weights of x itself and of every other y.

        The backward factor s exp(-delta Q) is `_propagate` at time -delta (every closed form of P(t) holds for
        negative t), so a structured `_propagate` makes this default structured too.
        """
        delta = delta.double()  # (B, 1) against x (B, L): one exp(-delta Q) per sequence for a dense chain
        backward = self._propagate(self._dense_score(x, score, scale), -delta)
        probs = (backward * self._transition_to(x, delta.expand(x.shape))).clamp_min(0.0)
        stay = probs.gather(-1, x[..., None]).squeeze(-1)
        return stay, probs.scatter(-1, x[..., None], 0.0)

    def _score_from_posterior(self, x: Tensor, probs: Tensor, total: Tensor) -> Tensor:
        # w_{x0} = p(x0) / P[x0, x] on the x0 that reach x; s = (w P(total)) / sum of p over them.
        total = total.double()
        column = self._transition_to(x, total)  # P(total)[x0, x] for every x0
        probs = self._padded(probs)
        reach = column > 0
        weights = torch.where(reach, probs / torch.where(reach, column, 1.0), 0.0)
        mass = torch.where(reach, probs, 0.0).sum(-1, keepdim=True)
        score = self._propagate(weights, total) / torch.where(mass > 0, mass, 1.0)
        score = torch.where(mass > 0, score, 0.0)
        return score.scatter(-1, x[..., None], 1.0)

    def _score_entropy(self, log_score: Tensor, x0: Tensor, x_t: Tensor, total: Tensor) -> Tensor:
        dtype = torch.promote_types(log_score.dtype, torch.float64)
        rows = self._transition_from(x0, total[:, None].double().expand_as(x0)).to(dtype)  # p(. | x0), (B, L, n)
        here = rows.gather(-1, x_t[..., None])
        if bool((here <= 0).any()):
            raise ValueError("x_t has probability 0 given x0 under the forward process; sample it with process.sample")
        ratio = rows / here
        weight = self._incoming_rates(x_t).to(dtype).scatter(-1, x_t[..., None], 0.0)
        return _bregman_terms(log_score.to(dtype), ratio, weight).to(log_score.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_states={self.num_states})"


def _bregman_terms(log_score: Tensor, ratio: Tensor, weight: Tensor) -> Tensor:
    """sum_y weight_y [ratio_y phi(log s_y - log ratio_y) if ratio_y > 0 else s_y] over the last dimension."""
    positive = ratio > 0
    log_ratio = torch.where(positive, torch.log(torch.where(positive, ratio, 1.0)), 0.0)
    u = log_score - log_ratio
    terms = torch.where(positive, ratio * (torch.expm1(u) - u), torch.exp(log_score))
    return torch.where(weight > 0, weight * terms, 0.0).sum(-1)
