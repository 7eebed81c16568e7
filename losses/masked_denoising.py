"""Time-independent losses for a clean-token denoiser on the absorbing chain (RADD, Ou et al. 2024; MDLM).

All three are a weighted cross-entropy over the masked positions,

    loss(t) = w(t) sum_i 1[x_t^i = M] (-log p_theta(x0^i | x_t)),

and differ in the weight and the time sampler, not in their expectation. With lambda(t) = 1 - e^{-sigma-bar(t)}
(the probability that a token is masked at t):
- t-DCE (Ou et al. 2024): t ~ U(0, 1], w = sigma(t) e^{-sigma-bar} / (1 - e^{-sigma-bar}) = lambda'(t) / lambda(t).
  It is denoising score entropy with the RADD score s = r(sigma-bar) p_theta, exactly (see docs/losses.md).
- lambda-DCE / any-order loss (Ou et al. 2024; LLaDA): lambda ~ U(0, lambda_1], lambda_1 = lambda(1), mapped to
  t = inverse_total(-log(1 - lambda)), w = lambda_1 / lambda. Same integral by the change of variables
  d lambda / lambda = w_tDCE dt. For LogLinear, lambda = (1 - eps) t and w = 1/t.
- MDLM NELBO (Sahoo et al. 2024): t ~ U(0, 1], alpha(t) = e^{-sigma-bar(t)}, w = -alpha'(t) / (1 - alpha(t)),
  which is the t-DCE weight written in MDLM's alpha notation.
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from ctmc.noise_ratio import log_mask_ratio
from losses._validation import check_finite_loss, check_log_probs
from losses.base import DiffusionLoss


class MaskedDenoisingLoss(DiffusionLoss):
    """Shared mechanism: w(t) times the masked-position cross-entropy; subclasses give `weight(t)`.

    `output` is (B, L, V) log-probabilities log p_theta(x0 | x_t) over the V clean tokens (no mask column).
    """

    output_kind = "log_probs"
    time_independent = True

    def __init__(self, process: ctmc.ForwardProcess) -> None:
        super().__init__(process)
        if not process.rate_matrix.score_factorises:
            raise TypeError(
                f"{type(self).__name__} needs a chain whose score factorises into a clean-token denoiser (the "
                f"absorbing chain, ctmc.Absorbing), got {process.rate_matrix!r}; for other chains use "
                "losses.ScoreEntropy"
            )
        self.vocab_size = process.rate_matrix.num_clean_states
        self.mask_index = process.rate_matrix.mask_index

    @property
    def output_width(self) -> int:
        """V: the denoiser's log-probabilities cover the clean tokens only."""
        return self.vocab_size

    def output_positions(self, x_t: Tensor) -> Tensor:
        """x_t == mask: the loss reads the denoiser only at masked positions. x_t: (B, L) long -> (B, L) bool."""
        return x_t == self.mask_index

    def weight(self, t: Tensor) -> Tensor:
        """w(t) for (B,) times in (0, 1]; returns (B,) in t's dtype."""
        raise NotImplementedError

    def _loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        check_log_probs(output)
        log_likelihood = output.gather(-1, x0[..., None]).squeeze(-1)
        masked = x_t == self.mask_index
        nll = torch.where(masked, -log_likelihood, torch.zeros((), dtype=output.dtype, device=output.device))
        loss = self.weight(t.double()).to(output.dtype) * nll.sum(-1)
        return check_finite_loss(loss, "output gives probability 0 (log-prob -inf) to the clean token")


class TDCE(MaskedDenoisingLoss):
    """t-DCE: w(t) = sigma(t) e^{-sigma-bar} / (1 - e^{-sigma-bar}) = sigma(t) r(sigma-bar), t ~ U(0, 1]."""

    def weight(self, t: Tensor) -> Tensor:
        return self.process.sigma(t) * torch.exp(log_mask_ratio(self.process.total(t)))


class MDLMNELBO(TDCE):
    """MDLM's continuous-time NELBO: w(t) = -alpha'(t) / (1 - alpha(t)), alpha(t) = e^{-sigma-bar(t)}, t ~ U(0, 1].

    alpha'(t) = -sigma(t) alpha(t), so the weight is the t-DCE weight (the two coincide term by term).
    """

    def weight(self, t: Tensor) -> Tensor:
        total = self.process.total(t)
        alpha = torch.exp(-total)
        alpha_rate = -self.process.sigma(t) * alpha  # alpha'(t)
        return -alpha_rate / -torch.expm1(-total)  # 1 - alpha without cancellation


class LambdaDCE(MaskedDenoisingLoss):
    """lambda-DCE: lambda = 1 - e^{-sigma-bar(t)} ~ U(0, lambda_1], w = lambda_1 / lambda (1/t for LogLinear)."""

    def _lambda_max(self) -> Tensor:
        return -torch.expm1(-self.process.total(torch.tensor(1.0, dtype=torch.float64)))

    def weight(self, t: Tensor) -> Tensor:
        masked_fraction = -torch.expm1(-self.process.total(t))  # lambda(t)
        return self._lambda_max().to(t.dtype) / masked_fraction

    def time_density(self, t: Tensor) -> Tensor:
        """p(t) = lambda'(t) / lambda_1 with lambda'(t) = sigma(t) e^{-sigma-bar(t)}: lambda ~ U(0, lambda_1]."""
        t = t.double()
        return self.process.sigma(t) * torch.exp(-self.process.total(t)) / self._lambda_max()

    def _time_from_uniform(self, u: Tensor) -> Tensor:
        schedule = self.process.schedule
        top = float(schedule.total(torch.tensor(1.0, dtype=torch.float64)))  # the bound inverse_total checks
        total = (-torch.log1p(-self._lambda_max() * u)).clamp(max=top)
        return schedule.inverse_total(total)
