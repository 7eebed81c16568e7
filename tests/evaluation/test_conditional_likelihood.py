"""The class-conditional AR judge (evaluation/conditional_likelihood.py). References: enumeration of every sequence
of a tiny vocabulary (the likelihoods of each class sum to 1), the network's own nll per block and label, and Bayes'
rule written out with math."""

from __future__ import annotations

import itertools
import math

import torch

from evaluation.conditional_likelihood import class_posterior, conditional_log_likelihoods, likelihood_share
from models import ARTransformer

VOCAB, LENGTH, CLASSES = 2, 3, 3


def conditional_model() -> ARTransformer:
    torch.manual_seed(0)
    model = ARTransformer(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=LENGTH, num_classes=CLASSES)
    model = model.double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def test_log_likelihoods_are_the_conditional_laws():
    model = conditional_model()
    every = torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))
    log_likelihoods = conditional_log_likelihoods(model.nll, every, CLASSES, batch_size=3)
    torch.testing.assert_close(
        log_likelihoods.exp().sum(0), torch.ones(CLASSES, dtype=torch.float64), rtol=0, atol=1e-12
    )
    for c in range(CLASSES):
        expected = -model.nll(every, torch.full((every.shape[0],), c))
        torch.testing.assert_close(log_likelihoods[:, c], expected.detach(), rtol=0, atol=0)
    assert not torch.allclose(log_likelihoods[:, 0], log_likelihoods[:, 1])


def test_posterior_and_share_by_bayes_rule():
    log_likelihoods = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -2.0]], dtype=torch.float64)
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    posterior = class_posterior(log_likelihoods, prior.log())
    for m in range(2):
        joint = [math.exp(float(log_likelihoods[m, c])) * float(prior[c]) for c in range(CLASSES)]
        expected = [math.log(v / sum(joint)) for v in joint]
        torch.testing.assert_close(posterior[m], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)
    uniform = class_posterior(log_likelihoods)
    torch.testing.assert_close(uniform, log_likelihoods - log_likelihoods.logsumexp(-1, keepdim=True))
    result = likelihood_share(log_likelihoods, 2)
    assert (result.hits, result.total, result.share) == (1, 2, 0.5)
