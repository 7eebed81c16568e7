"""Ancestral sampling of an autoregressive model: x_k ~ p_theta(. | x_{<k}), one token per network call.

    x_k ~ Decoding(p_theta(x_k = . | x_0 .. x_{k-1})),   k = len(prefix), ..., length - 1,

with the destination draw of `samplers.Decoding` (exact by default; temperature, top-k, top-p or greedy
otherwise), in float64. `next_token_log_probs(prefix (B, k) long) -> (B, V)` is e.g.
`models.ARTransformer.next_token_log_probs`; without a key-value cache each call re-reads its prefix, so the
cost of a sequence is sum_k O(k) trunk positions (quadratic in the length) for length - len(prefix) calls.

A sliding context (`context` = C) lets a model trained on windows of C + 1 tokens write any length: the network
reads only the last C tokens, x_k ~ p_theta(. | x_{k-C} .. x_{k-1}), the law of each window's last token given
the tokens before it, as in training (a window starts anywhere in the text). Each call then costs O(C).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ctmc.checks import check_int
from samplers.base import SamplingResult
from samplers.decoding import Decoding

NextToken = Callable[[Tensor], Tensor]


def ancestral_sample(
    next_token_log_probs: NextToken,
    batch_size: int,
    length: int,
    *,
    prefix: Tensor | None = None,
    decoding: Decoding | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    context: int | None = None,
) -> SamplingResult:
    """(batch_size, length) tokens drawn left to right after `prefix`, and the number of network calls.

    prefix: None or (k,) / (batch_size, k) long token ids kept verbatim in front, k <= length (k = length
    returns the prefix with no call). decoding: None samples the model's law exactly. context: None (the network
    reads the whole prefix) or C >= 1, the most tokens it reads: the last C (module docstring).
    """
    check_int("batch_size", batch_size, 1)
    check_int("length", length, 1)
    if context is not None:
        check_int("context", context, 1)
    decoding = decoding or Decoding()
    if prefix is None:
        tokens = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    else:
        if not isinstance(prefix, Tensor) or prefix.dtype != torch.long or prefix.dim() not in (1, 2):
            raise ValueError("prefix must be a (k,) or (batch_size, k) long tensor of token ids")
        tokens = prefix.to(device).expand(batch_size, prefix.shape[-1]).clone()
        if tokens.shape[1] > length:
            raise ValueError(f"prefix has {tokens.shape[1]} tokens, more than length={length}; shorten the prefix")
    calls = 0
    while tokens.shape[1] < length:
        log_probs = next_token_log_probs(tokens if context is None else tokens[:, -context:])  # (B, V)
        calls += 1
        weights = torch.exp(log_probs.double() - log_probs.double().amax(-1, keepdim=True))
        nxt = decoding.draw(weights, generator).to(tokens.device)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return SamplingResult(tokens, calls)
