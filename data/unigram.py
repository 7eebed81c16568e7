"""The unigram model of a set of token blocks: the level any language model of that data must beat."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

UNIGRAM_PSEUDO_COUNT = 0.5  # add-1/2 (Krichevsky-Trofimov) smoothing of the counts


def unigram_log_probs(blocks: Sequence[Tensor], vocab_size: int, pseudo_count: float = UNIGRAM_PSEUDO_COUNT) -> Tensor:
    """(V,) float64 log p(v) = log((n_v + a) / (N + a V)): the add-a unigram model of the tokens of `blocks`.

    blocks: a dataset (len and [i]) of token tensors in [0, vocab_size), e.g. data.TokenBlocks; a = pseudo_count.
    """
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for index in range(len(blocks)):
        counts += torch.bincount(blocks[index].flatten(), minlength=vocab_size).double()
    return torch.log((counts + pseudo_count) / (counts.sum() + pseudo_count * vocab_size))


def unigram_entropy_of(tokens: Tensor) -> float:
    """Entropy (nats) of the token histogram of all of `tokens` (T,): -sum_v f_v log f_v, the cross-entropy of
    the best unigram model of these very tokens (a property of the text, not a model to compare with)."""
    frequencies = torch.bincount(tokens.flatten()).double()
    frequencies = frequencies[frequencies > 0] / tokens.numel()
    return float(-(frequencies * frequencies.log()).sum())
