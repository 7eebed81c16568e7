"""The loss interface: a `DiffusionLoss` compares a network output with the clean data at a noisy time.

`forward(output, x0, x_t, t)` returns one number per sequence, in nats, summed over positions. Its
expectation over t ~ `sample_time` and x_t ~ `process.sample(x0, t[:, None])` is the quantity the loss names
(a negative ELBO for the ELBO losses). Each subclass draws times from the distribution its weighting assumes.

Noise draws: training and evaluation (evaluation/bounds.py) draw (t, x_t) for a sequence through the loss:
`draw_noise` (times from `sample_time`, x_t from the forward process) or, with the masked-count estimator,
`sample_counts` and `count_draws`, weighted by `importance_weighted`; `bound()` is the loss whose expectation is
the reported bound. A loss whose noise has more structure (one time per block: losses.BlockDiffusionLoss)
overrides these, and the training path needs nothing else.

Packed outputs: `output_positions(x_t)` is the (B, L) bool of the positions whose output the loss reads (on the
absorbing chain the masked ones: every other term is exactly zero), or None when every position contributes.
`forward` takes either the full (B, L, width) output or the packed (N, width) rows of the network output at
`where = output_positions(x_t)` (`network(x_t, sigma, where=where)`, rows in the row-major order of
where.nonzero(), N = where.sum()), told apart by the number of dimensions, and returns the same (B,) values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import ctmc
from ctmc.checks import check_int
from losses._validation import check_output, check_output_values, check_pair, check_time
from losses.estimators import MaskedCountEstimator, NoiseDraw, stratified_counts


def uniform_draws(batch_size: int, generator: torch.Generator | None = None, antithetic: bool = False) -> Tensor:
    """(B,) float64 uniforms in [0, 1): independent, or stratified u_b = (u + b) / B with one shared u.

    The stratified draws cover [0, 1) evenly (one per interval [b / B, (b + 1) / B)), so an average over them has
    the same expectation and a lower variance. Shared by every loss's time (or step) sampler.
    """
    check_int("batch_size", batch_size, 1)
    if antithetic:
        shift = torch.rand((), dtype=torch.float64, generator=generator)
        return (shift + torch.arange(batch_size, dtype=torch.float64)) / batch_size
    return torch.rand(batch_size, dtype=torch.float64, generator=generator)


class DiffusionLoss(nn.Module):
    """Base class: holds the forward process, validates inputs, and samples times (uniform by default).

    Subclasses set `output_kind` ("log_score", "log_probs" or "x0_logits"), `time_independent`, the output
    width `output_width` (n by default), and implement `_loss(output, x0, x_t, t) -> (B,)` on checked inputs.
    `includes_prior` says whether the loss already holds the t = 1 prior term KL(q(x_1 | x0) || pi) (D3PM's
    does); for the others the training path adds losses.PriorKL to every reported bound.
    """

    output_kind: str = ""
    time_independent: bool = False
    includes_prior: bool = False

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        super().__init__()
        if not isinstance(process, ctmc.ForwardProcess):
            raise TypeError(
                f"process must be a ctmc.ForwardProcess, got {type(process).__name__}; build one with "
                "ctmc.ForwardProcess(ctmc.Absorbing(V), ctmc.LogLinear())"
            )
        self.process = process

    def network_input_states(self) -> int:
        """The argument a network of this loss is built with: the V clean tokens for a time-independent denoiser
        (models.RADDDenoiser adds its mask state itself), else every state of the chain (models.DiT)."""
        return self.process.rate_matrix.num_clean_states if self.time_independent else self.process.num_states

    @property
    def num_states(self) -> int:
        """n, the number of states per token of the forward process."""
        return self.process.num_states

    @property
    def num_clean_states(self) -> int:
        """The number of values a clean token may take (the chain's `num_clean_states`: all but a mask)."""
        return self.process.rate_matrix.num_clean_states

    @property
    def output_width(self) -> int:
        """The last dimension of the network output this loss reads: n by default."""
        return self.num_states

    def output_positions(self, x_t: Tensor) -> Tensor | None:
        """The (B, L) bool of positions whose output the loss reads, or None: every position (the default).

        x_t: (B, L) long. A network asked for only these positions (`where=`) gives a packed output that
        `forward` turns into the same loss, without computing the head where the loss term is zero.
        """
        return None

    def forward(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Per-sequence loss in nats. output: (B, L, width) float, or the packed (N, width) rows at the positions
        where = output_positions(x_t) (module docstring); x0, x_t: (B, L) long; t: (B,) in (0, 1].

        Returns (B,) in output's dtype.
        """
        x0, x_t = check_pair(x0, x_t, self.num_clean_states, self.num_states)
        packed = isinstance(output, Tensor) and output.dim() == 2
        where = self._packed_positions(x_t) if packed else None
        leading = (int(where.sum()),) if packed else x0.shape
        check_output(output, leading, self.output_width, self.output_kind, packed=packed)
        scanned = not self._checks_output_values()
        if scanned:
            check_output_values(output, self.output_kind)
        t = check_time(t, x0.shape[0], output.device)
        self._check_consistent(x0, x_t)
        x0, x_t = x0.to(output.device), x_t.to(output.device)
        try:
            loss = self._loss_at(output, x0, x_t, t, where)
        except ValueError:  # when the loss checked the values itself, say that the output is the cause
            if not scanned:
                check_output_values(output, self.output_kind)
            raise
        return loss

    def _checks_output_values(self) -> bool:
        """Whether `_loss` itself refuses a NaN or +inf in every output entry that it reads and gives an exact 0
        gradient to the entries that it does not; then `forward` skips its scan of the whole output (one pass
        over (B, L, width), 3% of a training step at B = 8, L = 128, V = 50,257). False: scan first."""
        return False

    def _loss_at(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, where: Tensor | None) -> Tensor:
        """`_loss` of the full output (where None) or of the packed rows at where (B, L) bool. Returns (B,)."""
        if where is None:
            return self._loss(output, x0, x_t, t)
        # Each packed row is a sequence of length 1 at its sequence's time; the terms are summed back per sequence.
        where = where.to(output.device)
        batch_index = where.nonzero()[:, 0]
        per_row = self._loss(output[:, None, :], x0[where][:, None], x_t[where][:, None], t[batch_index])  # (N,)
        return per_row.new_zeros(x0.shape[0]).index_add(0, batch_index, per_row)

    def _packed_positions(self, x_t: Tensor) -> Tensor:
        """output_positions(x_t), refusing a packed output for a loss that reads every position."""
        where = self.output_positions(x_t)
        if where is None:
            raise ValueError(
                f"output is packed (2-D), but {type(self).__name__} on {self.process.rate_matrix!r} reads every "
                "position (output_positions(x_t) is None); pass the full (B, L, width) network output"
            )
        return where

    def _check_consistent(self, x0: Tensor, x_t: Tensor) -> None:
        """x_t must be reachable from x0 (e.g. for the absorbing chain a token is either kept or masked)."""
        if not bool(self.process.rate_matrix.reachable(x0, x_t).all()):
            raise ValueError(
                "x_t holds a state that the forward process cannot reach from x0 (for a chain with a mask: a "
                "changed token that is not masked); pass x_t = process.sample(x0, t[:, None]) with the same x0"
            )

    def _loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_time(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """Draw (B,) float32 times in (0, 1] from the distribution this loss's weighting assumes.

        antithetic=True gives stratified times u_b = (u + b) / B (one shared uniform u), which cover (0, 1]
        evenly and lower the variance of an average over the batch without changing its expectation.
        """
        u = uniform_draws(batch_size, generator, antithetic)
        t = self._time_from_uniform(1.0 - u)  # 1 - u lies in (0, 1]
        return t.clamp(min=torch.finfo(torch.float32).tiny, max=1.0).float().to(device)

    def _time_from_uniform(self, u: Tensor) -> Tensor:
        """Map u ~ U(0, 1] (float64) to the loss's time distribution; the identity gives uniform t."""
        return u

    def time_density(self, t: Tensor) -> Tensor:
        """p(t), the density of `sample_time`'s law at times t (N,) in (0, 1]; float64. Uniform: 1.

        A subclass that changes `_time_from_uniform` gives its density here (importance weights need it:
        losses.estimators).
        """
        return torch.ones_like(t, dtype=torch.float64)

    # ---- the noise of a draw (evaluation/bounds.py) -------------------------------------------------------
    def bound(self) -> DiffusionLoss:
        """The loss whose expectation (plus the prior term) is the reported bound: this loss itself. A training
        objective that is only part of the bound (a clipped range of mask rates) returns its full-range loss."""
        return self

    def draw_noise(
        self,
        x0: Tensor,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        noise_generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Times and noisy inputs for the rows x0 (K, L) long: t = sample_time(K, generator=generator,
        antithetic=antithetic) on x0's device and x_t ~ P(0, t)[x0, :] drawn with noise_generator (x0's device).

        Returns (t (K,), x_t (K, L)); forward(output, x0, x_t, t) is then one unbiased draw of the loss.
        """
        t = self.sample_time(x0.shape[0], generator=generator, antithetic=antithetic).to(x0.device)
        return t, self.process.sample(x0, t[:, None], generator=noise_generator)

    def sample_counts(self, num_draws: int, length: int, generator: torch.Generator | None = None) -> Tensor:
        """The masked counts of `num_draws` masked-count draws of a length-L sequence: (K,) long stratified over
        1..L (losses.stratified_counts). `count_draws` takes them (or rows of them)."""
        return stratified_counts(num_draws, length, generator)

    def count_draws(
        self, estimator: MaskedCountEstimator, x0: Tensor, counts: Tensor, generator: torch.Generator | None = None
    ) -> NoiseDraw:
        """Masked-count draws of the rows x0 (K, L) with `counts` (K,) from `sample_counts`:
        estimator.sample(x0, counts, time_density, generator) (losses.MaskedCountEstimator, absorbing chain)."""
        return estimator.sample(x0, counts, self.time_density, generator)

    def importance_weighted(self, output: Tensor, x0: Tensor, draw: NoiseDraw, dtype: torch.dtype) -> Tensor:
        """(K,) draw.weight * forward(output, x0, draw.x_t, draw.t) in `dtype`: the estimate of one masked-count
        draw (its expectation over `count_draws` is the loss's). output: the network's output at draw.x_t."""
        return draw.weight.to(dtype) * self(output, x0, draw.x_t, draw.t).to(dtype)

    def extra_repr(self) -> str:
        return repr(self.process)
