"""The block diffusion bound (BD3-LM, Arriola et al. 2025): a masked-diffusion bound per block, given the clean prefix.

Cut x (B, L) into K = L / S blocks x^b of S = block_size tokens. The model factorises over blocks and each
block's conditional is a masked diffusion model, so (absorbing chain, lambda(t) = 1 - e^{-sigma-bar(t)})

    -log p_theta(x) = sum_b -log p_theta(x^b | x^{<b}) <= sum_b N_b(x) (+ the prior term per position),
    N_b(x) = int_0^{lambda_1} (1 / lambda) E_{A ~ Bernoulli(lambda)^S} [ sum_{i in A} -log p_theta(x^b_i | x^b_A,
             x^{<b}) ] d lambda,

with x^b_A the block with the positions A masked and lambda_1 = lambda(1): each N_b is the lambda-DCE bound
(losses.masked_denoising.LambdaDCE) of the length-S sequence x^b under the network's conditional given the
clean blocks before it. Block size 1 gives N_b = lambda_1 (-log p_theta(x_b | x_{<b})) (the only draw is A = {b},
its weight lambda_1 / lambda times the probability lambda of masking it): lambda_1 times the autoregressive NLL.

Estimators (one forward of the network's training form, `models.BlockDenoiser.forward(x_t, clean=x0)`, serves
every block at once; the draws of different blocks are independent):
- times: each block draws its own t_b, lambda_b ~ U(0, lambda_1], and the block's term is
  w(t_b) sum_{i in block b, masked} -log p_theta(...), w = lambda_1 / lambda (LambdaDCE's weight);
- masked counts (losses.MaskedCountEstimator per block, `count_noise`): m_b ~ U{1..S} stratified,
  lambda_b | m_b ~ Beta(m_b, S - m_b + 1) truncated to (0, lambda_1], importance weight
  (S / m_b) P(Binomial(S, lambda_1) >= m_b) times the block's summed cross-entropy (bounded by S).
The sequence's estimate is the sum of its blocks' terms; its standard error over sequences is the one of every
masked loss (the ratio estimate of sum of nats over sum of tokens, evaluation.bounds.ratio_estimate).

Clipped mask rates (Arriola et al. 2025, a training-only variance reduction): with clip = (beta, omega) the
rates are drawn from lambda_b ~ U[beta, omega'] (omega' = min(omega, lambda_1)) with weight (omega' - beta) / lambda,
an unbiased estimate of int_beta^{omega'} (1 / lambda) E_A[...] d lambda: the part of the bound from those rates
(omega' - beta times the paper's objective E_{lambda ~ U[beta, omega]}[(1 / lambda) ...]). It is not a bound;
`bound()` is the same loss over the full range, for evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from ctmc.checks import check_int
from losses.estimators import MaskedCountEstimator, NoiseDraw, stratified_counts
from losses.masked_denoising import LambdaDCE


class BlockDiffusionLoss(LambdaDCE):
    """The block diffusion bound (module docstring) for a `models.BlockDenoiser` output.

    process: an absorbing-chain ctmc.ForwardProcess; block_size: S >= 1, which must divide the sequence length;
    clip: None (the full range, a bound) or (beta, omega) with 0 <= beta < omega <= 1 and beta < lambda_1, the
    mask rates of training draws. `forward(output, x0, x_t, t)` takes the network's (B, L, V) output (or its
    packed rows at output_positions(x_t)), x0, x_t (B, L) and t (B, K) per-block times (or (B,): one time for all
    blocks), and returns (B,) nats: the sum over blocks of `block_losses`.
    """

    def __init__(
        self, process: ctmc.ForwardProcess, block_size: int, clip: tuple[float, float] | None = None
    ) -> None:
        super().__init__(process)
        check_int("block_size", block_size, 1, "it counts the tokens per block")
        self.block_size = block_size
        top = float(self._lambda_max())
        if clip is None:
            self.clip = None
            self.rate_range = (0.0, top)
        else:
            beta, omega = _check_clip(clip, top)
            self.clip = (beta, omega)
            self.rate_range = (beta, min(omega, top))

    # ---- the bound and its clipped part ----------------------------------------------------------------
    def bound(self) -> BlockDiffusionLoss:
        """The same loss over the full range of mask rates (clip None): an upper bound, for evaluation."""
        return self if self.clip is None else BlockDiffusionLoss(self.process, self.block_size)

    def weight(self, t: Tensor) -> Tensor:
        """w(t) = (high - low) / lambda(t) over the mask-rate range [low, high] (lambda_1 / lambda unclipped)."""
        low, high = self.rate_range
        return (high - low) / -torch.expm1(-self.process.total(t))

    def time_density(self, t: Tensor) -> Tensor:
        """p(t) = lambda'(t) / (high - low) where lambda(t) lies in [low, high], else 0; float64."""
        t = t.double()
        low, high = self.rate_range
        rate = -torch.expm1(-self.process.total(t))
        density = self.process.sigma(t) * torch.exp(-self.process.total(t)) / (high - low)
        return torch.where((rate >= low) & (rate <= high), density, torch.zeros_like(density))

    def _time_from_uniform(self, u: Tensor) -> Tensor:
        low, high = self.rate_range
        schedule = self.process.schedule
        top = float(schedule.total(torch.tensor(1.0, dtype=torch.float64)))
        return schedule.inverse_total((-torch.log1p(-(low + (high - low) * u))).clamp(max=top))

    # ---- blocks ------------------------------------------------------------------------------------------
    def num_blocks(self, length: int) -> int:
        """K = L / block_size, refusing a length that block_size does not divide."""
        if length % self.block_size:
            raise ValueError(
                f"the sequence length {length} must be a multiple of block_size={self.block_size}; choose a "
                "block_size that divides the sequence length"
            )
        return length // self.block_size

    def blocks(self, x: Tensor, name: str = "x") -> Tensor:
        """The blocks of x (B, L) as rows: (B K, block_size), row b K + k = block k of sequence b."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"{name} must be a (B, L) tensor of token ids")
        return x.reshape(x.shape[0] * self.num_blocks(x.shape[1]), self.block_size)

    def sample_block_times(
        self,
        batch_size: int,
        num_blocks: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """(B, K) float32 times, one per block, from `sample_time`'s law (lambda uniform on the rate range).

        antithetic: B K stratified draws put on the blocks in a uniformly random order (`_spread`): each block's
        time has the law itself, and the batch covers the range evenly.
        """
        t = self.sample_time(batch_size * num_blocks, device, generator, antithetic)
        return _spread(t, batch_size, num_blocks, generator)

    def noise(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t (B, L): every token of block k of sequence b masked with probability lambda(t[b, k]).

        x0: (B, L) long; t: (B, K) per-block times, or (B,) one time per sequence.
        """
        self.blocks(x0, "x0")  # the shape check
        times = self._block_times(t, x0.shape[0], self.num_blocks(x0.shape[1]))
        per_position = times.repeat_interleave(self.block_size, dim=1)  # (B, L)
        return self.process.sample(x0, per_position.to(x0.device), generator)

    def sample_block_counts(
        self, batch_size: int, num_blocks: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, K) masked counts in 1..block_size stratified over all B K blocks (losses.stratified_counts) and put
        on the blocks in a uniformly random order: each block's count is uniform on 1..block_size."""
        counts = stratified_counts(batch_size * num_blocks, self.block_size, generator)
        return _spread(counts, batch_size, num_blocks, generator)

    def count_noise(self, x0: Tensor, counts: Tensor, generator: torch.Generator | None = None) -> NoiseDraw:
        """Masked-count draws per block (losses.MaskedCountEstimator on the blocks as sequences of length S).

        x0: (B, L) long; counts: (B, K) long in [1, block_size]. Returns a NoiseDraw with t (B, K) float32,
        x_t (B, L) and weight (B, K) float64: weight * block_losses(output, x0, x_t, t), summed over blocks,
        estimates the bound. Only for the full range (clip None): call it on `bound()`.
        """
        if self.clip is not None:
            raise ValueError(
                "count_noise estimates the full-range bound, but this loss is clipped; call loss.bound().count_noise "
                "or draw clipped training times with sample_block_times"
            )
        rows = self.blocks(x0, "x0")
        batch, num_blocks = x0.shape[0], rows.shape[0] // x0.shape[0]
        if not isinstance(counts, Tensor) or counts.shape != (batch, num_blocks):
            shape = tuple(counts.shape) if isinstance(counts, Tensor) else type(counts).__name__
            raise ValueError(f"counts must be a (B, K) = ({batch}, {num_blocks}) long tensor, got {shape}")
        draw = MaskedCountEstimator(self.process).sample(rows, counts.reshape(-1), self.time_density, generator)
        return NoiseDraw(draw.t.view(batch, num_blocks), draw.x_t.view(x0.shape), draw.weight.view(batch, num_blocks))

    # ---- the noise of the training path (losses.DiffusionLoss's draw methods, evaluation/bounds.py) --------
    def draw_noise(
        self,
        x0: Tensor,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        noise_generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One time per block: t = sample_block_times(K, L / S, generator=generator, antithetic=antithetic) (the
        K L / S block times of the rows stratified together when antithetic) and x_t = noise(x0, t, noise_generator).

        x0: (K, L) long. Returns (t (K, L / S) on x0's device, x_t (K, L)).
        """
        t = self.sample_block_times(x0.shape[0], self.num_blocks(x0.shape[1]), generator=generator,
                                    antithetic=antithetic).to(x0.device)
        return t, self.noise(x0, t, noise_generator)

    def sample_counts(self, num_draws: int, length: int, generator: torch.Generator | None = None) -> Tensor:
        """(K, L / S) masked counts per block, each uniform on 1..S, stratified over the K L / S blocks
        (`sample_block_counts`)."""
        return self.sample_block_counts(num_draws, self.num_blocks(length), generator)

    def count_draws(
        self, estimator: MaskedCountEstimator, x0: Tensor, counts: Tensor, generator: torch.Generator | None = None
    ) -> NoiseDraw:
        """Masked-count draws per block of the rows x0 (K, L) with counts (K, L / S): `count_noise` of the full-range
        bound, which runs the absorbing chain's MaskedCountEstimator (the `estimator` the training path passes)
        on every block as a sequence of S tokens. Returns t (K, L / S), x_t (K, L) and weight (K, L / S)."""
        return self.bound().count_noise(x0, counts, generator)

    def importance_weighted(self, output: Tensor, x0: Tensor, draw: NoiseDraw, dtype: torch.dtype) -> Tensor:
        """(K,) sum over blocks of weight * block_losses (`count_draws`' estimate of the full-range bound, in dtype);
        always the full range: the loss that reads these draws is `bound()`."""
        block_losses = self.bound().block_losses(output, x0, draw.x_t, draw.t)
        return (draw.weight.to(dtype) * block_losses.to(dtype)).sum(-1)

    # ---- the loss ----------------------------------------------------------------------------------------
    def block_losses(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """(B, K) nats: block k's term w(t[b, k]) sum_{i in block k, masked} -log p_theta(x0_i | ...).

        output: (B, L, V) log-probabilities (the training form of models.BlockDenoiser), or the packed rows at
        output_positions(x_t); x0, x_t: (B, L) long; t: (B, K) or (B,).
        """
        x0_rows, x_t_rows = self.blocks(x0, "x0"), self.blocks(x_t, "x_t")
        batch, num_blocks = x0.shape[0], self.num_blocks(x0.shape[1])
        if isinstance(output, Tensor) and output.dim() == 3:
            if output.shape[:2] != x0.shape:
                raise ValueError(
                    f"output must have shape (B, L, V) = ({batch}, {x0.shape[1]}, {self.vocab_size}) or be the "
                    f"packed rows at output_positions(x_t), got {tuple(output.shape)}"
                )
            output = output.reshape(x0_rows.shape[0], self.block_size, -1)  # the same rows, one block each
        times = self._block_times(t, batch, num_blocks).reshape(-1)
        per_block = super().forward(output, x0_rows, x_t_rows, times)
        return per_block.view(batch, num_blocks)

    def forward(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """(B,) nats: block_losses(output, x0, x_t, t) summed over the blocks."""
        return self.block_losses(output, x0, x_t, t).sum(-1)

    def _block_times(self, t: Tensor, batch: int, num_blocks: int) -> Tensor:
        """t (B, K), or (B,) for one time per sequence -> (B, K)."""
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a float tensor of shape (B, K) or (B,), got {type(t).__name__}")
        if t.shape == (batch, num_blocks):
            return t
        if t.shape == (batch,):
            return t[:, None].expand(batch, num_blocks)
        raise ValueError(
            f"t must hold one time per block, shape (B, K) = ({batch}, {num_blocks}) for blocks of block_size="
            f"{self.block_size}, or one per sequence, shape (B,) = ({batch},); got {tuple(t.shape)}"
        )

    def extra_repr(self) -> str:
        return f"{self.process!r}, block_size={self.block_size}, clip={self.clip}"


def _spread(values: Tensor, batch_size: int, num_blocks: int, generator: torch.Generator | None) -> Tensor:
    """(B K,) stratified draws -> (B, K) in a uniformly random order (one CPU permutation from generator).

    A fixed order would give block k of every sequence the same strata: biased per block, since the blocks'
    conditionals differ. Randomly placed, each block gets a uniformly chosen stratum, i.e. a draw from the law.
    """
    order = torch.randperm(values.numel(), generator=generator).to(values.device)
    return values[order].view(batch_size, num_blocks)


def _check_clip(clip: object, top: float) -> tuple[float, float]:
    """(beta, omega) with 0 <= beta < omega <= 1 and beta < lambda_1 = top."""
    if not isinstance(clip, (tuple, list)) or len(clip) != 2 or not all(isinstance(v, (int, float)) for v in clip):
        raise ValueError(f"clip must be None or a pair (beta, omega) of mask rates, got {clip!r}")
    beta, omega = float(clip[0]), float(clip[1])
    if not (0.0 <= beta < omega <= 1.0) or beta >= top:
        raise ValueError(
            f"clip = (beta, omega) needs 0 <= beta < omega <= 1 and beta < lambda_1 = {top:.6g} (the largest mask "
            f"rate of the schedule), got {clip!r}"
        )
    return beta, omega
