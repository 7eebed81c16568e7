"""Generative perplexity: how likely an autoregressive judge finds generated samples (SEDD, Lou et al. 2024;
MDLM, Sahoo et al. 2024), with a standard error and the samples' unigram entropy beside it.

For N samples x_1 .. x_N of L tokens and a judge p_J with exact conditionals,

    m_b = -(1/L) sum_l log p_J(x_b^l | x_b^{<l}),      gen-PPL = exp(mean_b m_b)

(equal lengths, so this is exp of the total NLL over the total number of tokens). By the delta method its
standard error is gen-PPL * s / sqrt(N), with s the sample standard deviation of the m_b (ddof = 1). A low
gen-PPL alone means little: repetitive text scores well, so the unigram entropy (samplers.unigram_entropy,
Zheng et al. 2024) is always reported with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ctmc.checks import check_int
from losses._validation import INTEGER_DTYPES
from samplers.metrics import unigram_entropy

Judge = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class GenerativePerplexity:
    """The score of N samples under a judge. nll_per_token: (N,) float64 m_b in nats; the rest are numbers."""

    nll_per_token: Tensor
    gen_ppl: float
    standard_error: float
    unigram_entropy: float
    num_samples: int
    length: int

    def summary(self) -> dict[str, float | int]:
        """The scalar fields, for JSON: gen_ppl, standard_error, unigram_entropy, num_samples, length,
        and mean_nll_per_token (nats)."""
        fields = {key: value for key, value in asdict(self).items() if key != "nll_per_token"}
        return {**fields, "mean_nll_per_token": float(self.nll_per_token.mean())}


def _judge_attribute(judge: Judge, given: int | None, name: str) -> int:
    value = given if given is not None else getattr(judge, name, None)
    if value is None:
        raise ValueError(f"{name} of the judge is unknown: pass {name}=..., or a judge with a {name} attribute")
    return check_int(name, value, 1)


def generative_perplexity(
    judge: Judge,
    samples: Tensor,
    *,
    batch_size: int = 16,
    vocab_size: int | None = None,
    max_length: int | None = None,
) -> GenerativePerplexity:
    """gen-PPL = exp(mean_b m_b) of samples under `judge`, with its delta-method standard error (module doc).

    judge: callable x (B, L) long -> (B, L, V) log p_J(x^l = y | x^{<l}), e.g. models.ARTransformer (in eval
    mode); vocab_size and max_length default to the judge's attributes of those names. samples: (N, L) integer
    token ids in [0, V), N >= 2, 1 <= L <= max_length. The judge runs without gradients on batches of
    batch_size samples (each holds one (batch_size, L, V) output).
    """
    if not callable(judge):
        raise TypeError(f"judge must be a callable x (B, L) -> (B, L, V) log-probs, got {type(judge).__name__}")
    if isinstance(judge, nn.Module) and judge.training:
        raise ValueError("judge is in training mode (dropout would randomise the scores); call judge.eval() first")
    vocab_size = _judge_attribute(judge, vocab_size, "vocab_size")
    max_length = _judge_attribute(judge, max_length, "max_length")
    check_int("batch_size", batch_size, 1)
    if not isinstance(samples, Tensor) or samples.dtype not in INTEGER_DTYPES or samples.dim() != 2:
        raise TypeError(
            f"samples must be an integer tensor of token ids of shape (N, L), got {getattr(samples, 'shape', samples)}"
        )
    count, length = samples.shape
    if count < 2 or length < 1:
        raise ValueError(
            f"samples must hold N >= 2 sequences (for a standard error) of L >= 1 tokens, got N={count}, L={length}"
        )
    if length > max_length:
        raise ValueError(
            f"samples have length {length} > the judge's context max_length={max_length}; generate shorter "
            "samples or use a judge with a longer context"
        )
    if bool((samples < 0).any()) or bool((samples >= vocab_size).any()):
        raise ValueError(
            f"samples hold token ids in [{int(samples.min())}, {int(samples.max())}], outside the judge's vocabulary "
            f"[0, {vocab_size}); the judge must use the samples' tokenizer"
        )
    samples = samples.long()
    per_sample = []
    with torch.no_grad():
        for block in samples.split(batch_size):
            log_probs = judge(block)
            if not isinstance(log_probs, Tensor) or log_probs.shape != (*block.shape, vocab_size):
                raise ValueError(
                    f"judge must return (B, L, V) = {(*block.shape, vocab_size)} log-probabilities, got "
                    f"{tuple(getattr(log_probs, 'shape', ()))}"
                )
            per_sample.append(-log_probs.gather(-1, block[..., None]).squeeze(-1).double().mean(-1))
    nll = torch.cat(per_sample).cpu()  # (N,) m_b
    gen_ppl = math.exp(float(nll.mean()))
    return GenerativePerplexity(
        nll_per_token=nll,
        gen_ppl=gen_ppl,
        standard_error=gen_ppl * float(nll.std(correction=1)) / math.sqrt(count),
        unigram_entropy=unigram_entropy(samples),
        num_samples=count,
        length=length,
    )
