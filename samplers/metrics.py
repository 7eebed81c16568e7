"""Diversity of generated text: the unigram entropy reported beside every score of samples.

Low-temperature artefacts (such as float32 categorical sampling, Zheng et al. 2024) lower a perplexity-like
score while making text repetitive; the unigram entropy exposes it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def unigram_entropy(tokens: Tensor) -> float:
    """Mean over sequences of the entropy (nats) of each sequence's token histogram, H = -sum_v f_v log f_v.

    tokens: (B, L) or (L,) integer ids. This is the "token entropy" of Zheng et al. 2024 (there per sample
    and averaged). Vectorised: sort each row and count the runs.
    """
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() not in (1, 2):
        raise ValueError("tokens must be an integer tensor of shape (B, L) or (L,)")
    if tokens.dim() == 1:
        tokens = tokens[None]
    batch, length = tokens.shape
    if length == 0:
        raise ValueError("tokens must have at least one position")
    ordered = tokens.sort(1).values
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = starts.flatten().long().cumsum(0) - 1
    counts = torch.bincount(run).double()
    row_of_run = torch.arange(batch, device=tokens.device).repeat_interleave(length)[starts.flatten()]
    freq = counts / length
    entropy = torch.zeros(batch, dtype=torch.float64, device=tokens.device)
    entropy.index_add_(0, row_of_run, -freq * torch.log(freq))
    return float(entropy.mean())
