"""A toy chain whose every quantity is known by enumeration, in float64: the reference for sampler tests.

p_0 is a fixed, correlated distribution over all V^L clean sequences. The marginal at total noise sigma-bar is
p_t(x) = sum_{x0} p_0(x0) prod_i P(sigma-bar)[x0_i, x_i] (P = exp(sigma-bar Q) from ctmc, per position), the
exact concrete score is s[b, i, y] = p_t(x with x_i = y) / p_t(x), the exact posterior marginal of a position is
p(x0_i = y | x_t = x) proportional to sum_{x0 : x0_i = y} p_0(x0) prod_j P(sigma-bar)[x0_j, x_j] (an exact
x0-predictor, any chain), and the exact denoiser of the absorbing chain is p(x0_i = y | x_t) proportional to
the p_0 mass of the clean sequences that agree with x_t's unmasked tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import ctmc


class ToyChain:
    def __init__(self, process: ctmc.ForwardProcess, vocab: int, length: int, seed: int = 0) -> None:
        self.process, self.vocab, self.length = process, vocab, length
        self.n = process.num_states
        import numpy as np  # only for this reference law (NumPy's seeded Dirichlet): `import ctmc` needs torch only

        weights = torch.from_numpy(np.random.default_rng(seed).dirichlet(np.full(vocab**length, 0.4)))
        self.p0 = 0.9 * weights / weights.sum() + 0.1 / vocab**length
        self.clean = self._enumerate(vocab)  # (C, L)
        self.states = self._enumerate(self.n)  # (S, L)
        self.powers = self.n ** torch.arange(length - 1, -1, -1)
        self.clean_powers = vocab ** torch.arange(length - 1, -1, -1)

    def _enumerate(self, base: int) -> Tensor:
        grids = torch.meshgrid(*[torch.arange(base)] * self.length, indexing="ij")
        return torch.stack([g.flatten() for g in grids], -1)

    def joint_of(self, seqs: Tensor, total: Tensor) -> Tensor:
        """p(x0 = c, x_t = seq) = p0(c) prod_i P_b[c_i, seq_i] for every clean c: seqs (B, K, L), total (B,).
        Returns (B, K, C)."""
        p = self.process.rate_matrix.transition(total.double())  # (B, n, n)
        b = torch.arange(seqs.shape[0])[:, None, None, None]
        factors = p[b, self.clean[None, None, :, :], seqs[:, :, None, :]]  # (B, K, C, L)
        return factors.prod(-1) * self.p0

    def marginal_of(self, seqs: Tensor, total: Tensor) -> Tensor:
        """p_t(seq) for seqs (B, K, L) and total (B,): sum_c p0(c) prod_i P_b[c_i, seq_i]. Returns (B, K)."""
        return self.joint_of(seqs, total).sum(-1)

    def posterior_of(self, seqs: Tensor, total: Tensor) -> Tensor:
        """p(x0_i = y | x_t = seq) for seqs (B, K, L), total (B,): (B, K, L, V) float64 (0 for an unreachable seq)."""
        onehot = torch.nn.functional.one_hot(self.clean, self.vocab).double()  # (C, L, V)
        probs = torch.einsum("bkc,clv->bklv", self.joint_of(seqs, total), onehot)
        mass = probs.sum(-1, keepdim=True)
        return torch.where(mass > 0, probs / torch.where(mass > 0, mass, 1.0), 0.0)

    def posterior(self, x: Tensor, total: Tensor) -> Tensor:
        """Exact p(x0_i = y | x_t = x), the exact x0-predictor: x (B, L), total (B,). Returns (B, L, V) float64."""
        unique, inverse = torch.unique(total, return_inverse=True)
        if unique.numel() <= 8:  # grid samplers: one table over all sequences per time
            tables = self.posterior_of(self.states[None].expand(unique.numel(), -1, -1), unique.double())
            return tables[inverse, (x * self.powers).sum(-1)]
        return self.posterior_of(x[:, None, :], total)[:, 0]

    def neighbours(self, x: Tensor) -> Tensor:
        """(B, L * n + 1, L): x with position i set to y for every (i, y), then x itself."""
        batch = x.shape[0]
        seqs = x[:, None, None, :].repeat(1, self.length, self.n, 1)
        i = torch.arange(self.length)[:, None].expand(self.length, self.n)
        y = torch.arange(self.n)[None, :].expand(self.length, self.n)
        seqs[:, i, y, i] = y
        return torch.cat([seqs.reshape(batch, -1, self.length), x[:, None, :]], 1)

    def score(self, x: Tensor, total: Tensor) -> Tensor:
        """Exact concrete score (B, L, n) at total noise `total` (B,), in float64."""
        seqs = self.neighbours(x)  # (B, K, L)
        unique, inverse = torch.unique(total, return_inverse=True)
        if unique.numel() <= 8:  # grid samplers: one time per call, one table over all sequences
            tables = self.marginal_of(self.states[None].expand(unique.numel(), -1, -1), unique.double())
            probs = tables[inverse[:, None], (seqs * self.powers).sum(-1)]
        else:  # per-sequence times (first-hitting): only the needed sequences
            probs = self.marginal_of(seqs, total)
        return (probs[:, :-1] / probs[:, -1:]).view(-1, self.length, self.n)

    def denoiser(self, x: Tensor) -> Tensor:
        """Exact p(x0_i = y | x_t = x) for the absorbing chain: (B, L, V) float64."""
        mask = self.vocab
        agree = ((x[:, None, :] == mask) | (x[:, None, :] == self.clean[None])).all(-1)  # (B, C)
        weights = agree.double() * self.p0
        onehot = torch.nn.functional.one_hot(self.clean, self.vocab).double()  # (C, L, V)
        probs = torch.einsum("bc,clv->blv", weights, onehot)
        return probs / probs.sum(-1, keepdim=True)

    def histogram(self, samples: Tensor) -> Tensor:
        """Empirical law of (N, L) clean samples over the V^L sequences (float64)."""
        index = (samples * self.clean_powers).sum(-1)
        return torch.bincount(index, minlength=self.vocab**self.length).double() / samples.shape[0]


def total_variation(p: Tensor, q: Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def tv_noise_bound(p: Tensor, num_samples: int, alpha: float = 1e-4) -> float:
    """A (1 - alpha) upper bound on the TV between p and an N-sample histogram of p.

    E[TV] <= 0.5 sum_x sqrt(p(x)(1 - p(x)) / N) (Jensen, per cell), and TV moves by at most 1/N when one sample
    changes, so by McDiarmid P(TV > E[TV] + d) <= exp(-2 N d^2): d = sqrt(log(1/alpha) / (2N)).
    """
    mean = 0.5 * float(torch.sqrt(p * (1 - p) / num_samples).sum())
    return mean + math.sqrt(math.log(1 / alpha) / (2 * num_samples))
