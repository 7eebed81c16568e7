"""D3PM's discrete-time loss (Austin et al. 2021; seeds 000, 004): the variational bound plus a hybrid term.

With T steps, x_i ~ Cat(x0 Q-bar_i) and an x0-prediction p~_theta(x0 | x_i) (softmax of the logits),

    -log p_theta(x0) <= KL(q(x_T | x0) || prior) + sum_{i=2}^T KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i))
                        - log p_theta(x0 | x_1),

    p_theta(x_{i-1} | x_i) proportional to sum_{x~0} q(x_{i-1}, x_i | x~0) p~_theta(x~0 | x_i)   (their eq. 5),

both posteriors from `ctmc.DiscreteTimeChain.posterior` (ids for q, probabilities for p_theta). At i = 1,
q(x_0 | x_1, x0) is the point mass at x0, so the KL term is the reconstruction -log p_theta(x0 | x_1): one
formula covers every step. With i ~ U{1..T}, `forward` returns

    T * KL_i + KL(q(x_T | x0) || prior) + hybrid_weight * (-log p~_theta(x0 | x_i)),

whose expectation is the negative ELBO plus hybrid_weight times D3PM's auxiliary cross-entropy. Posteriors are
computed in float64; zero-mass states contribute 0 * log 0 = 0 exactly (no epsilon is added to logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import ctmc
from losses._validation import check_finite_loss, check_output, check_pair


class D3PMLoss(nn.Module):
    """The D3PM hybrid loss for a `ctmc.DiscreteTimeChain`; `output` is (B, L, n) logits of x0."""

    output_kind = "x0_logits"
    time_independent = False

    def __init__(self, chain: ctmc.DiscreteTimeChain, hybrid_weight: float = 0.01) -> None:
        super().__init__()
        if not isinstance(chain, ctmc.DiscreteTimeChain):
            raise TypeError(f"chain must be a ctmc.DiscreteTimeChain, got {type(chain).__name__}")
        if isinstance(hybrid_weight, bool) or not isinstance(hybrid_weight, (int, float)) or hybrid_weight < 0:
            raise ValueError(f"hybrid_weight must be a number >= 0 (D3PM uses 0.01), got {hybrid_weight!r}")
        self.chain = chain
        self.hybrid_weight = float(hybrid_weight)
        self.register_buffer("_prior_kl", self._prior_table(), persistent=False)

    @property
    def num_states(self) -> int:
        return self.chain.num_states

    def _clean_states(self) -> int:
        rate_matrix = self.chain.rate_matrix
        return rate_matrix.vocab_size if isinstance(rate_matrix, ctmc.Absorbing) else rate_matrix.num_states

    def _prior_table(self) -> Tensor:
        """KL(q(x_T | x0 = a) || prior) for every clean a: (clean states,) float64.

        The prior is the all-mask point mass (Absorbing) or the uniform distribution (Uniform, and any other
        chain, for which the table is formed densely).
        """
        rate_matrix = self.chain.rate_matrix
        total = self.chain._cumulative_times[-1].clamp_max(1e4)
        clean = self._clean_states()
        if isinstance(rate_matrix, ctmc.Absorbing):
            kept = torch.exp(-total)
            if kept > 0:
                raise ValueError(
                    f"the chain keeps a token unmasked at step T with probability {kept.item():.3g}, so the "
                    "all-mask prior has infinite KL; end the betas with beta_T = 1 "
                    "(DiscreteTimeChain.linear_mutual_information does)"
                )
            return torch.zeros(clean, dtype=torch.float64)
        n = rate_matrix.num_states
        states = torch.arange(clean)
        rows = rate_matrix.transition_from(states, total.expand(clean))
        return torch.xlogy(rows, rows * n).sum(-1)

    def sample_steps(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        antithetic: bool = False,
    ) -> Tensor:
        """Draw (B,) long steps i ~ U{1, ..., T}; antithetic=True stratifies them ((u + b) / B covers 1..T)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if antithetic:
            u = (torch.rand((), dtype=torch.float64, generator=generator) + torch.arange(batch_size)) / batch_size
        else:
            u = torch.rand(batch_size, dtype=torch.float64, generator=generator)
        steps = (u * self.chain.num_steps).long().clamp(max=self.chain.num_steps - 1) + 1
        return steps.to(device)

    def sample_time(self, batch_size: int, device=None, generator=None, antithetic: bool = False) -> Tensor:
        """The shared interface's times: i / T in (0, 1] for i from `sample_steps`."""
        steps = self.sample_steps(batch_size, device, generator, antithetic)
        return steps.float() / self.chain.num_steps

    def kl_terms(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """Per-position KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i)): (B, L) float64 (>= 0, 0 iff equal)."""
        true_posterior = self.chain.posterior(x_t, x0, i[:, None])
        predicted = torch.softmax(output.double(), dim=-1)
        model_posterior = self.chain.posterior(x_t, predicted, i[:, None])
        support = true_posterior > 0
        log_model = torch.log(torch.where(support, model_posterior, 1.0))
        log_true = torch.log(torch.where(support, true_posterior, 1.0))
        return torch.where(support, true_posterior * (log_true - log_model), 0.0).sum(-1)

    def forward(self, output: Tensor, x0: Tensor, x_t: Tensor, i: Tensor) -> Tensor:
        """T KL_i + prior KL + hybrid_weight * CE, summed over positions. output: (B, L, n) logits;
        x0: (B, L) clean ids; x_t: (B, L) ids of x_i; i: (B,) long steps in [1, T]. Returns (B,) in output's dtype.
        """
        x0, x_t = check_pair(x0, x_t, self._clean_states(), self.num_states)
        check_output(output, x0.shape, self.num_states, self.output_kind)
        if not isinstance(i, Tensor) or i.is_floating_point() or i.dtype == torch.bool or i.shape != x0.shape[:1]:
            raise TypeError(f"i must be a (B,) = ({x0.shape[0]},) long tensor of steps, got {getattr(i, 'dtype', i)}")
        if bool((i < 1).any()) or bool((i > self.chain.num_steps).any()):
            raise ValueError(f"i must lie in [1, {self.chain.num_steps}], got {i.min().item()}..{i.max().item()}")
        device = output.device
        x0, x_t, i = x0.to(device), x_t.to(device), i.to(device)
        variational = self.chain.num_steps * self.kl_terms(output, x0, x_t, i).sum(-1)
        prior = self._prior_kl.to(device)[x0].sum(-1)
        cross_entropy = -torch.log_softmax(output, dim=-1).gather(-1, x0[..., None]).squeeze(-1).sum(-1)
        loss = (variational + prior).to(output.dtype) + self.hybrid_weight * cross_entropy
        return check_finite_loss(loss, "x_t cannot be reached from x0 at step i, or output gives the data 0 mass")
