"""A multinomial naive Bayes classifier of token blocks: a judge of class-conditional samples that shares nothing
with the diffusion model (no network, no training beyond counting).

Fit on training blocks x (length L) with labels c: with n_{c, v} the number of occurrences of token v in the blocks
of class c, N_c the number of blocks of class c and N = sum_c N_c, add-alpha (Laplace / Lidstone) smoothing gives

    log theta_{c, v} = log(n_{c, v} + alpha) - log(sum_v' n_{c, v'} + alpha V),
    log pi_c = log(N_c / N)                        (or log(1 / C) with uniform_prior=True),

and a block x is classified by the posterior of the multinomial model (the block's token counts; the multinomial
coefficient is the same for every class and cancels):

    log p(c | x) = log pi_c + sum_l log theta_{c, x_l} - logsumexp_c'(log pi_c' + sum_l log theta_{c', x_l}).

`share(samples, label)` is the share of samples classified as the requested class with its binomial standard error
(evaluation.class_share).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from evaluation.class_share import ClassShare, class_share


class NaiveBayes:
    """Multinomial naive Bayes over vocab_size tokens and num_classes classes, add-alpha smoothing (alpha > 0).

    `fit(tokens, labels)` counts from scratch, `update(tokens, labels)` adds more blocks (stream a corpus in
    batches); the counts are float64 tensors `token_counts` (C, V) and `block_counts` (C,).
    """

    def __init__(self, vocab_size: int, num_classes: int, alpha: float = 1.0, uniform_prior: bool = False) -> None:
        for name, value, minimum in (("vocab_size", vocab_size, 1), ("num_classes", num_classes, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0 < alpha < math.inf):
            raise ValueError(f"alpha must be a finite number > 0 (the smoothing pseudo-count), got {alpha!r}")
        self.vocab_size, self.num_classes = vocab_size, num_classes
        self.alpha, self.uniform_prior = float(alpha), bool(uniform_prior)
        self.token_counts = torch.zeros(num_classes, vocab_size, dtype=torch.float64)
        self.block_counts = torch.zeros(num_classes, dtype=torch.float64)

    def _check_tokens(self, tokens: Tensor, name: str = "tokens") -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
            kind = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"{name} must be a (blocks, length) torch.long tensor of token ids, got {kind}")
        if tokens.numel() and bool(((tokens < 0) | (tokens >= self.vocab_size)).any()):
            raise ValueError(
                f"{name} must hold token ids in [0, {self.vocab_size}), got values in "
                f"[{int(tokens.min())}, {int(tokens.max())}]; build the judge with the tokenizer's vocab_size"
            )
        return tokens.cpu()

    def update(self, tokens: Tensor, labels: Tensor) -> NaiveBayes:
        """Add the token counts of blocks tokens (N, L) long in [0, V) with labels (N,) long in [0, C)."""
        tokens = self._check_tokens(tokens)
        if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.shape != tokens.shape[:1]:
            raise ValueError(f"labels must be a ({tokens.shape[0]},) torch.long tensor, one class per block")
        labels = labels.cpu()
        if labels.numel() and bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(f"labels must hold class ids in [0, {self.num_classes}), got {labels.unique().tolist()}")
        cells = (labels[:, None] * self.vocab_size + tokens).flatten()
        size = self.num_classes * self.vocab_size
        self.token_counts += torch.bincount(cells, minlength=size).double().view(self.num_classes, self.vocab_size)
        self.block_counts += torch.bincount(labels, minlength=self.num_classes).double()
        return self

    def fit(self, tokens: Tensor, labels: Tensor) -> NaiveBayes:
        """Count from scratch: `update` on empty counts."""
        self.token_counts.zero_()
        self.block_counts.zero_()
        return self.update(tokens, labels)

    def log_token_probabilities(self) -> Tensor:
        """log theta (C, V) float64: add-alpha smoothed token laws of the classes."""
        totals = self.token_counts.sum(-1, keepdim=True)
        return torch.log(self.token_counts + self.alpha) - torch.log(totals + self.alpha * self.vocab_size)

    def log_prior(self) -> Tensor:
        """log pi (C,) float64: the classes' shares of the training blocks (uniform with uniform_prior)."""
        if self.uniform_prior:
            return torch.full((self.num_classes,), -math.log(self.num_classes), dtype=torch.float64)
        if bool((self.block_counts == 0).any()):
            missing = (self.block_counts == 0).nonzero().flatten().tolist()
            raise ValueError(
                f"classes {missing} have no training blocks, so their prior is 0; fit on blocks of every class or "
                "pass uniform_prior=True"
            )
        return torch.log(self.block_counts) - math.log(float(self.block_counts.sum()))

    def predict_log_proba(self, tokens: Tensor) -> Tensor:
        """log p(c | x) (M, C) float64 for blocks tokens (M, L) long in [0, V) (module docstring)."""
        tokens = self._check_tokens(tokens)
        if float(self.block_counts.sum()) == 0:
            raise ValueError("the judge has seen no training block; call fit(tokens, labels) first")
        per_token = self.log_token_probabilities().T[tokens]  # (M, L, C): log theta_{c, x_l}
        joint = per_token.sum(1) + self.log_prior()  # (M, C)
        return joint - joint.logsumexp(-1, keepdim=True)

    def predict(self, tokens: Tensor) -> Tensor:
        """The most probable class (M,) long of each block (ties: the smallest class id)."""
        return self.predict_log_proba(tokens).argmax(-1)

    def share(self, tokens: Tensor, label: int) -> ClassShare:
        """The share of blocks tokens (M, L) classified as `label`, with its binomial standard error."""
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < self.num_classes:
            raise ValueError(f"label must be a class id in [0, {self.num_classes}), got {label!r}")
        return class_share(self.predict(tokens), label)
