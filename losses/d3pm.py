"""D3PM's discrete-time loss (Austin et al. 2021): the variational bound plus a hybrid term.

With T steps, x_i ~ Cat(x0 Q-bar_i) and an x0-prediction p~_theta(x0 | x_i) (softmax of the logits),

    -log p_theta(x0) <= KL(q(x_T | x0) || prior) + sum_{i=2}^T KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i))
                        - log p_theta(x0 | x_1),

    p_theta(x_{i-1} | x_i) proportional to sum_{x~0} q(x_{i-1}, x_i | x~0) p~_theta(x~0 | x_i)   (their eq. 5),

both posteriors as in `ctmc.RateMatrix.posterior` (ids for q, probabilities for p_theta). At i = 1,
q(x_0 | x_1, x0) is the point mass at x0, so the KL term is the reconstruction -log p_theta(x0 | x_1): one
formula covers every step. The T steps are those of the forward process: step i covers times [(i - 1) / T,
i / T] (`ctmc.DiscreteTimeChain.from_process`), so D3PM trains through the same path as every other
`DiffusionLoss`: t = i / T with i ~ U{1..T} (`sample_time`), x_t = process.sample(x0, t), and `forward` returns

    T * KL_i + KL(q(x_T | x0) || prior) + hybrid_weight * (-log p~_theta(x0 | x_i)),

whose expectation is the negative ELBO plus hybrid_weight times D3PM's auxiliary cross-entropy. The prior is
the one every bound of the toolkit uses (`losses.PriorKL`, the t = 1 forward marginal of a uniformly drawn clean
token), not the chain's limit law: a schedule whose total noise at t = 1 is finite (LogLinear(eps) keeps a
fraction eps of the tokens clean) has q(x_T | x0) put mass on x0, which the absorbing chain's all-mask limit law
misses (an infinite KL), while the forward prior gives eps log V nats per token; where the schedule reaches the
limit law the two are the same. The per-position KL is the chain's `RateMatrix.d3pm_terms`: closed forms for the
Absorbing and Uniform chains (a few per-position numbers of the logits, no (B, L, n) posterior), the two
posteriors in float64 for any other chain (zero-mass states contribute 0 * log 0 = 0 exactly).
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctmc
from ctmc.checks import check_int
from losses._validation import check_finite_loss
from losses.base import DiffusionLoss, uniform_draws
from losses.prior import PriorKL


class D3PMLoss(DiffusionLoss):
    """The D3PM hybrid loss on the T-step discretisation of `process`; `output` is (B, L, n) logits of x0.

    process: the forward process; num_steps: T; hybrid_weight: the weight of the auxiliary cross-entropy
    (D3PM uses 0.01). `chain` is the `ctmc.DiscreteTimeChain` of the T steps. To train on a given discrete
    chain, pass `ctmc.ForwardProcess(chain.rate_matrix, chain.schedule())` and `chain.num_steps`.
    """

    output_kind = "x0_logits"
    time_independent = False
    includes_prior = True  # the KL(q(x_T | x0) || prior) term is part of the loss

    def __init__(self, process: ctmc.ForwardProcess, num_steps: int = 1000, hybrid_weight: float = 0.01) -> None:
        super().__init__(process)
        check_int("num_steps", num_steps, 1, "D3PM uses 1000")
        if isinstance(hybrid_weight, bool) or not isinstance(hybrid_weight, (int, float)) or hybrid_weight < 0:
            raise ValueError(f"hybrid_weight must be a number >= 0 (D3PM uses 0.01), got {hybrid_weight!r}")
        self.chain = ctmc.DiscreteTimeChain.from_process(process, num_steps)
        self.hybrid_weight = float(hybrid_weight)
        self.prior = PriorKL(process)  # KL(q(x_T | x0) || forward prior), per token

    @classmethod
    def from_chain(cls, chain: ctmc.DiscreteTimeChain, hybrid_weight: float = 0.01) -> D3PMLoss:
        """The loss of a given discrete chain: its rate matrix with `chain.schedule()`, T = chain.num_steps."""
        if not isinstance(chain, ctmc.DiscreteTimeChain):
            raise TypeError(f"chain must be a ctmc.DiscreteTimeChain, got {type(chain).__name__}")
        process = ctmc.ForwardProcess(chain.rate_matrix, chain.schedule())
        return cls(process, chain.num_steps, hybrid_weight)

    @property
    def num_steps(self) -> int:
        """T, the number of steps."""
        return self.chain.num_steps

    def sample_steps(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """Draw (B,) long steps i ~ U{1, ..., T}; antithetic=True stratifies them ((u + b) / B covers 1..T)."""
        u = uniform_draws(batch_size, generator, antithetic)
        steps = (u * self.num_steps).long().clamp(max=self.num_steps - 1) + 1
        return steps.to(device)

    def sample_time(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """The shared interface's times: (B,) float32 t = i / T in (0, 1] for i from `sample_steps`."""
        steps = self.sample_steps(batch_size, device, generator, antithetic)
        return (steps.double() / self.num_steps).float()

    def steps_of(self, t: Tensor) -> Tensor:
        """The step i = round(t T) of times t = i / T: (B,) long. Raises if a time is not on the grid."""
        scaled = t.double() * self.num_steps
        steps = scaled.round()
        if bool(((scaled - steps).abs() > 1e-3).any()):
            raise ValueError(
                f"t must be a multiple of 1 / T = 1 / {self.num_steps} (D3PM is discrete in time); draw times "
                "with loss.sample_time"
            )
        return steps.long().clamp(1, self.num_steps)

    def kl_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """Per-position KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i)): (B, L) float64 (>= 0, 0 iff equal).

        output: (B, L, n) logits; x0, x_t: (B, L) long; i: (B,) long in [1, T]. The chain's `d3pm_terms`.
        """
        return self._terms(output, x0, x_t, i)[0]

    def generic_kl_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """The same KL from the two posteriors of `DiscreteTimeChain.posterior` in float64, for any chain.

        Forms three (B, L, n) float64 tensors; the reference for the closed forms.
        """
        true_posterior = self.chain.posterior(x_t, x0, i[:, None])
        predicted = torch.softmax(output.double(), dim=-1)
        model_posterior = self.chain.posterior(x_t, predicted, i[:, None])
        support = true_posterior > 0
        log_model = torch.log(torch.where(support, model_posterior, 1.0))
        log_true = torch.log(torch.where(support, true_posterior, 1.0))
        return torch.where(support, true_posterior * (log_true - log_model), 0.0).sum(-1)

    def _terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> tuple[Tensor, Tensor]:
        """(KL (B, L) float64, -log p~_theta(x0 | x_i) (B, L) in output's dtype)."""
        step = self.chain.step_time(i).to(output.device)[:, None]
        before = self.chain.cumulative_time(i - 1).to(output.device)[:, None]
        return self.process.rate_matrix.d3pm_terms(output, x0, x_t, step, before)

    def prior_terms(self, x0: Tensor) -> Tensor:
        """KL(q(x_T | x0) || pi) per position, pi = `losses.forward_prior(process)` (module docstring): (B, L)
        float64, finite. x0: (B, L) long clean tokens."""
        return self.prior.per_token(x0)

    def _loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """T KL_i + prior KL + hybrid_weight * CE, summed over positions; i = t T. Returns (B,)."""
        kl, cross_entropy = self._terms(output, x0, x_t, self.steps_of(t))
        variational = self.num_steps * kl.sum(-1)
        prior = self.prior_terms(x0).sum(-1)
        loss = (variational + prior).to(output.dtype) + self.hybrid_weight * cross_entropy.sum(-1)
        return check_finite_loss(
            loss,
            "x_t cannot be reached from x0 at step i, or output gives the data 0 mass",
        )
