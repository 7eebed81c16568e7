"""A class-conditional toy chain known by enumeration (float64): the reference of the guidance tests.

Two classes with prior (0.6, 0.4) over the V^L = 27 clean sequences (V = L = 3): the law of class c is a Dirichlet
draw tilted by exp(2 (number of tokens equal to c)), so the classes are far apart in total variation. Each class law
and the mixture p0 = sum_c p(c) p0(. | c) is a `ctmc.enumeration.ToyChain`, which gives its exact concrete score and
denoiser; the exact classifier of noisy sequences is Bayes' rule over the classes,

    log p(c | x_t) = log p(c) + log p_t(x_t | c) - log sum_c' p(c') p_t(x_t | c'),

with p_t(. | c) the enumerated marginal of class c at the total noise of each row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from sampler_contract import LENGTH, VOCAB
from sampler_toy import ToyChain
from torch import Tensor

import ctmc

PRIOR = (0.6, 0.4)
TILT = 2.0


def make_process(chain: str) -> ctmc.ForwardProcess:
    """The forward process of the sampler contract's toys: 'absorbing...' or 'uniform'."""
    if chain.startswith("absorbing"):
        return ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(1e-4))
    return ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.Geometric(1e-3, 12.0))


class ClassToy:
    """Exact class-conditional quantities. `label` index num_classes (= 2) is the null label: the mixture."""

    def __init__(self, chain: str, seed: int = 0) -> None:
        self.process = make_process(chain)
        self.num_classes = len(PRIOR)
        self.prior = torch.tensor(PRIOR, dtype=torch.float64)
        self.classes = []
        for c in range(self.num_classes):
            toy = ToyChain(self.process, VOCAB, LENGTH, seed=seed + c)
            tilted = toy.p0 * torch.exp(TILT * (toy.clean == c).sum(-1).double())
            toy.p0 = tilted / tilted.sum()
            self.classes.append(toy)
        self.mixture = ToyChain(self.process, VOCAB, LENGTH, seed=seed)
        self.mixture.p0 = sum(p * toy.p0 for p, toy in zip(PRIOR, self.classes, strict=True))
        self.calls: list[tuple[int, Tensor]] = []  # (batch, labels) of every network call
        self._tables: dict[float, Tensor] = {}

    def chain_of(self, label: int) -> ToyChain:
        return self.mixture if label == self.num_classes else self.classes[label]

    def law(self, label: int) -> Tensor:
        """p0(. | label) over the V^L clean sequences (the mixture for the null label)."""
        return self.chain_of(label).p0

    def _per_label(self, label: Tensor, rows_of: Callable, batch: int, width: int) -> Tensor:
        out = torch.empty(batch, LENGTH, width, dtype=torch.float64)
        for value in label.unique().tolist():
            rows = label == value
            out[rows] = rows_of(self.chain_of(value), rows)
        return out

    def score(self, x: Tensor, total: Tensor, label: Tensor, where: Tensor | None = None) -> Tensor:
        """A conditional score network: log s(x | label) (B, L, n), or its packed rows at `where`."""
        self.calls.append((x.shape[0], label.clone()))
        n = self.process.num_states
        out = self._per_label(label, lambda toy, rows: toy.score(x[rows], total[rows]), x.shape[0], n).log()
        return out if where is None else out[where]

    def denoiser(self, x: Tensor, label: Tensor, where: Tensor | None = None) -> Tensor:
        """A conditional denoiser network: log p(x_0 | x_t, label) (B, L, V), or its packed rows at `where`."""
        self.calls.append((x.shape[0], label.clone()))
        out = self._per_label(label, lambda toy, rows: toy.denoiser(x[rows]), x.shape[0], VOCAB).log()
        return out if where is None else out[where]

    def classifier(self, x: Tensor, total: Tensor) -> Tensor:
        """Exact log p(c | x_t) (M, C) for x (M, L) long and total (M,) (Bayes' rule over the enumerated marginals)."""
        unique, inverse = torch.unique(total.double(), return_inverse=True)
        if unique.numel() <= 8:  # grid samplers: one table over all states per time, kept for the later chunks
            tables = torch.stack([self._posterior_table(float(value)) for value in unique])  # (U, S, C)
            return tables[inverse, (x * self.mixture.powers).sum(-1)]
        likelihood = torch.stack([toy.marginal_of(x[:, None, :], total.double())[:, 0] for toy in self.classes], -1)
        return self._posterior(likelihood)

    def _posterior(self, likelihood: Tensor) -> Tensor:
        joint = likelihood.log() + self.prior.log()
        return joint - joint.logsumexp(-1, keepdim=True)

    def _posterior_table(self, total: float) -> Tensor:
        """(S, C) log p(c | state) over all n^L states at one total noise (memoised)."""
        if total not in self._tables:
            states = self.mixture.states[None]
            time = torch.tensor([total], dtype=torch.float64)
            likelihood = torch.stack([toy.marginal_of(states, time)[0] for toy in self.classes], -1)
            self._tables[total] = self._posterior(likelihood)
        return self._tables[total]
