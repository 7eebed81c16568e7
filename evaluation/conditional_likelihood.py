"""A second judge: the class posterior of a block under a class-conditional autoregressive model.

With an exact conditional likelihood log p(x | c) (e.g. models.ARTransformer built with num_classes = C, whose
nll(x, label) is -log p_theta(x | c)), Bayes' rule gives

    log p(c | x) = log pi_c + log p(x | c) - logsumexp_c'(log pi_c' + log p(x | c')),

with a prior pi (uniform by default). The judge's verdict is the most probable class; `class_share` turns the
verdicts on samples of one requested class into a share with its binomial standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from evaluation.class_share import ClassShare, class_share


def conditional_log_likelihoods(
    nll: Callable[[Tensor, Tensor], Tensor], tokens: Tensor, num_classes: int, batch_size: int = 64
) -> Tensor:
    """log p(x | c) (M, C) float64: minus nll(x (b, L) long, label (b,) long) -> (b,) nats, for every block of
    tokens (M, L) and every class c in [0, num_classes), in batches of batch_size blocks, without gradients."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(tokens, Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
        raise ValueError("tokens must be a (blocks, length) torch.long tensor of token ids")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out = torch.zeros(tokens.shape[0], num_classes, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            block = tokens[start : start + batch_size]
            for c in range(num_classes):
                label = torch.full((block.shape[0],), c, dtype=torch.long, device=block.device)
                out[start : start + block.shape[0], c] = -nll(block, label).double().cpu()
    return out


def class_posterior(log_likelihoods: Tensor, log_prior: Tensor | None = None) -> Tensor:
    """log p(c | x) (M, C) from log p(x | c) (M, C) and log pi (C,) (None: uniform), by Bayes' rule."""
    if log_prior is None:
        log_prior = torch.full(log_likelihoods.shape[-1:], -math.log(log_likelihoods.shape[-1]), dtype=torch.float64)
    if log_prior.shape != log_likelihoods.shape[-1:]:
        raise ValueError(f"log_prior must have shape ({log_likelihoods.shape[-1]},), got {tuple(log_prior.shape)}")
    joint = log_likelihoods.double() + log_prior.double()
    return joint - joint.logsumexp(-1, keepdim=True)


def likelihood_share(log_likelihoods: Tensor, label: int, log_prior: Tensor | None = None) -> ClassShare:
    """The share of blocks whose most probable class under `class_posterior` is `label`, with its standard error."""
    return class_share(class_posterior(log_likelihoods, log_prior).argmax(-1), label)
