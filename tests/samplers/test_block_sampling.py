"""samplers.BlockSampler and samplers.SemiAutoregressiveSampler.

References: a toy law p0 over V^L = 3^4 sequences (sampler_toy.ToyChain, enumeration in float64) and its exact
block-causal conditionals (the toy denoiser of each block with the later blocks masked): the samples' law in
total variation against p0, its conditionals given a prompt, the law a sliding window implies, and the law of
the sequences cut at a stop token, all by enumeration. For the key/value cache: models.BlockDenoiser run on the
whole [context, block] at every call (cache=False) with the same generator must give the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from sampler_toy import ToyChain, total_variation, tv_noise_bound

import ctmc
import models
import samplers

VOCAB, LENGTH, BLOCK = 3, 4, 2
MASK = VOCAB
NUM_SAMPLES = 20_000
EPS = 1e-3


def _process() -> ctmc.ForwardProcess:
    return ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(1e-4))


@dataclass
class _Tokens:
    """The toy's cache: the context tokens themselves."""

    tokens: torch.Tensor

    def select(self, rows: torch.Tensor) -> _Tokens:
        return _Tokens(self.tokens[rows])


class BlockToy:
    """A block-causal denoiser with the exact conditionals of the toy law: the rows of block b are
    p0(x0^b_i = y | the unmasked tokens of x^b, x^{<b}), the toy denoiser of x with every later position masked.
    Records the widths of the blocks it denoises and of the tokens it encodes."""

    def __init__(self, toy: ToyChain, block_size: int = BLOCK) -> None:
        self.toy, self.block_size = toy, block_size
        self.encoded: list[int] = []
        self.denoised: list[int] = []
        self.table = self._rows(toy.states).log()  # (n^L, L, V): the output of every window of length L

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, V) probabilities by the definition: block b from the toy denoiser with positions >= its end masked."""
        out = torch.empty(x.shape[0], self.toy.length, VOCAB, dtype=torch.float64)
        for start in range(0, self.toy.length, self.block_size):
            stop = start + self.block_size
            masked_after = torch.cat([x[:, :stop], torch.full_like(x[:, stop:], MASK)], 1)
            out[:, start:stop] = self.toy.denoiser(masked_after)[:, start:stop]
        return out

    def __call__(self, x: torch.Tensor, sigma=None, where=None) -> torch.Tensor:
        """Log-probabilities (B, n, V) of a window x (B, n), n <= L (looked up with the window padded by masks)."""
        padded = torch.cat([x, torch.full((x.shape[0], self.toy.length - x.shape[1]), MASK)], 1)
        log = self.table[(padded * self.toy.powers).sum(-1)][:, : x.shape[1]]
        return log if where is None else log[where]

    def encode_context(self, tokens: torch.Tensor, cache: _Tokens | None = None) -> _Tokens:
        self.encoded.append(tokens.shape[1])
        return _Tokens(tokens if cache is None else torch.cat([cache.tokens, tokens], 1))

    def denoise_block(self, x: torch.Tensor, cache: _Tokens | None = None, where=None) -> torch.Tensor:
        self.denoised.append(x.shape[1])
        context = torch.zeros(x.shape[0], 0, dtype=torch.long) if cache is None else cache.tokens
        rows = self(torch.cat([context, x], 1))[:, context.shape[1] :]
        return rows if where is None else rows[where]


def _toy() -> ToyChain:
    return ToyChain(_process(), VOCAB, LENGTH)


def _window_law(toy: ToyChain) -> torch.Tensor:
    """Law of (x2, x3, x4, x5) when x0..x3 ~ p0 and (x4, x5) follows p0's (x2, x3) given (x0, x1) = (x2, x3)."""
    table = toy.p0.view(VOCAB**2, VOCAB**2)  # [first pair, second pair]
    marginal = table.sum(0)  # law of (x2, x3)
    conditional = table / table.sum(1, keepdim=True)  # next pair given the first
    return (marginal[:, None] * conditional).flatten()


@pytest.mark.parametrize(
    ("inner", "cache", "bias"),
    [("first-hitting", True, 0.0), ("first-hitting", False, 0.0), ("euler", True, 0.01)],
)
def test_block_sampling_draws_the_model_law(inner: str, cache: bool, bias: float) -> None:
    """First-hitting inside each block is exact (TV within sampling noise); Euler at 128 steps within 0.01 (the
    bias allowance of the sampler contract)."""
    toy = _toy()
    inner_sampler = (
        samplers.FirstHittingSampler(_process(), eps=EPS) if inner == "first-hitting"
        else samplers.EulerSampler(_process(), 128, EPS)
    )
    result = samplers.BlockSampler(inner_sampler, BLOCK, cache=cache).generate(
        BlockToy(toy), NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(0)
    )
    assert result.tokens.shape == (NUM_SAMPLES, LENGTH) and bool((result.lengths == LENGTH).all())
    assert total_variation(toy.histogram(result.tokens), toy.p0) <= tv_noise_bound(toy.p0, NUM_SAMPLES) + bias


def test_a_prompt_ending_inside_a_block_gives_the_conditional_law() -> None:
    """prefix (2,): the first block keeps it and draws x1; the rest follows p0(x1, x2, x3 | x0 = 2)."""
    toy = _toy()
    sampler = samplers.BlockSampler(samplers.FirstHittingSampler(_process(), eps=EPS), BLOCK)
    out = sampler.sample(BlockToy(toy), NUM_SAMPLES, LENGTH, prefix=torch.tensor([2]),
                         generator=torch.Generator().manual_seed(1))
    assert bool((out[:, 0] == 2).all())
    conditional = toy.p0.view(VOCAB, -1)[2]
    conditional = conditional / conditional.sum()
    index = (out[:, 1:] * toy.clean_powers[1:]).sum(-1)
    histogram = torch.bincount(index, minlength=VOCAB**3).double() / NUM_SAMPLES
    assert total_variation(histogram, conditional) <= tv_noise_bound(conditional, NUM_SAMPLES)


@pytest.mark.parametrize("kind", ["block-cache", "block", "semi-autoregressive"])
def test_a_sliding_window_follows_the_law_it_implies(kind: str) -> None:
    """Length 6 through a window of 4 (max_length, or the semi-AR window), 2 tokens kept / drawn per slide: x0..x3
    follow p0, and (x4, x5) follow p0's second pair given the first pair = (x2, x3), re-encoded from position 0."""
    toy = _toy()
    inner = samplers.FirstHittingSampler(_process(), eps=EPS)
    generator = torch.Generator().manual_seed(2)
    if kind == "semi-autoregressive":
        denoiser = samplers.Denoiser(toy.denoiser)
        out = samplers.SemiAutoregressiveSampler(inner, BLOCK, LENGTH).sample(denoiser, NUM_SAMPLES, 6,
                                                                             generator=generator)
    else:
        sampler = samplers.BlockSampler(inner, BLOCK, max_length=LENGTH, cache=kind == "block-cache")
        out = sampler.sample(BlockToy(toy), NUM_SAMPLES, 6, generator=generator)
    bound = tv_noise_bound(toy.p0, NUM_SAMPLES)
    assert total_variation(toy.histogram(out[:, :4]), toy.p0) <= bound
    law = _window_law(toy)
    assert total_variation(toy.histogram(out[:, 2:]), law) <= tv_noise_bound(law, NUM_SAMPLES)


def test_a_time_dependent_block_score_without_cache_draws_the_model_law() -> None:
    """cache=False with a ConcreteScore: the toy block model as a concrete score (RADD factorisation,
    ctmc.denoiser_to_score) on [context, block] windows, Tweedie inside each block: p0 within the bias allowance."""
    toy = _toy()
    block_model = BlockToy(toy)

    def score(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        return ctmc.denoiser_to_score(block_model(x), x, total)

    sampler = samplers.BlockSampler(samplers.TweedieSampler(_process(), 32, EPS), BLOCK, cache=False)
    out = sampler.sample(samplers.ConcreteScore(score), 4000, LENGTH, generator=torch.Generator().manual_seed(7))
    assert total_variation(toy.histogram(out), toy.p0) <= tv_noise_bound(toy.p0, 4000) + 0.01


def test_rows_stop_at_the_stop_token_with_the_law_of_the_cut_sequences() -> None:
    """stop_token 0: each row ends at its first generated 0 (kept), is padded with 0 and reports that length; the
    padded sequences follow the law of p0's sequences cut after their first 0 (enumerated)."""
    toy = _toy()
    stop = 0
    sampler = samplers.BlockSampler(samplers.FirstHittingSampler(_process(), eps=EPS), BLOCK)
    result = sampler.generate(BlockToy(toy), NUM_SAMPLES, LENGTH, stop_token=stop,
                              generator=torch.Generator().manual_seed(3))
    tokens, lengths = result.tokens, result.lengths
    positions = torch.arange(LENGTH)
    first = torch.where(tokens == stop, positions, LENGTH).min(1).values
    assert torch.equal(lengths, (first + 1).clamp(max=LENGTH))
    assert bool((tokens[positions >= lengths[:, None]] == stop).all())
    cut = toy.clean.clone()
    clean_first = torch.where(cut == stop, positions, LENGTH).min(1).values
    cut[positions > clean_first[:, None]] = stop
    law = torch.zeros_like(toy.p0).index_add_(0, (cut * toy.clean_powers).sum(-1), toy.p0)
    assert total_variation(toy.histogram(tokens), law) <= tv_noise_bound(law, NUM_SAMPLES)


def test_each_finished_block_is_encoded_once_and_each_call_sees_one_block() -> None:
    toy = _toy()
    model = BlockToy(toy)
    sampler = samplers.BlockSampler(samplers.EulerSampler(_process(), 8, EPS), BLOCK)
    result = sampler.generate(model, 5, LENGTH, generator=torch.Generator().manual_seed(4))
    assert model.encoded == [BLOCK]  # block 0, once, before block 1; the last block is never encoded
    assert set(model.denoised) == {BLOCK} and result.calls == len(model.denoised) + 1
    model = BlockToy(toy)
    sampler.generate(model, 5, LENGTH, prefix=torch.tensor([1, 2, 0]), generator=torch.Generator().manual_seed(4))
    assert model.encoded == [BLOCK]  # the prompt's whole block; its last token is fixed inside block 1


def _network(block_size: int = 4, max_length: int = 12) -> models.BlockDenoiser:
    torch.manual_seed(0)
    network = models.BlockDenoiser(7, 16, 2, 2, max_length, local_mixing=3, block_size=block_size).double().eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return network


INNER = {
    "euler-top-p": lambda process: samplers.EulerSampler(process, 16, top_p=0.9),
    "tweedie": lambda process: samplers.TweedieSampler(process, 8),
    "first-hitting": lambda process: samplers.FirstHittingSampler(process),
    "first-hitting-2": lambda process: samplers.FirstHittingSampler(process, steps=2),
    "remdm": lambda process: samplers.ReMDMSampler(process, 8),
}


@pytest.mark.parametrize("inner", sorted(INNER))
@pytest.mark.parametrize("keep", [None, 4])
def test_cache_gives_the_samples_of_recomputing_the_prefix(inner: str, keep: int | None) -> None:
    """Same generator, with and without the cache: equal tokens, lengths and NFE, through an unaligned prompt,
    sliding past max_length = 12 and rows stopping at token 1; the cache adds only its encoding passes."""
    network = _network()
    process = ctmc.ForwardProcess(ctmc.Absorbing(7), ctmc.LogLinear())
    results = [
        samplers.BlockSampler(INNER[inner](process), 4, max_length=12, keep=keep, cache=cache).generate(
            network, 6, 30, prefix=torch.tensor([1, 2, 3]), stop_token=1, generator=torch.Generator().manual_seed(5)
        )
        for cache in (True, False)
    ]
    cached, recomputed = results
    assert torch.equal(cached.tokens, recomputed.tokens) and torch.equal(cached.lengths, recomputed.lengths)
    assert cached.nfe == recomputed.nfe and cached.calls > recomputed.calls
    assert bool((cached.lengths < 30).any()) and int(cached.lengths.max()) > 12  # rows stopped; some slid


def test_semi_autoregressive_writes_past_the_window_with_a_time_dependent_score() -> None:
    """A concrete score (SEDD-style, time-dependent) through the semi-AR windows: prompt kept, length reached,
    and x0..x3 within sampling noise + Tweedie's bias allowance of p0."""
    toy = _toy()
    sampler = samplers.SemiAutoregressiveSampler(samplers.TweedieSampler(_process(), 32, EPS), 1, LENGTH)
    out = sampler.sample(samplers.ConcreteScore(toy.score), 4000, 7, generator=torch.Generator().manual_seed(6))
    assert out.shape == (4000, 7) and int(out.max()) < VOCAB
    assert total_variation(toy.histogram(out[:, :4]), toy.p0) <= tv_noise_bound(toy.p0, 4000) + 0.01


def test_bad_input_raises_one_clear_line() -> None:
    process = _process()
    inner = samplers.EulerSampler(process, 4)
    toy_model = BlockToy(_toy())
    with pytest.raises(TypeError, match=r"inner must be a samplers\.Sampler"):
        samplers.BlockSampler("euler", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        samplers.BlockSampler(inner, 0)
    with pytest.raises(ValueError, match="max_length must be an int >= 2"):
        samplers.BlockSampler(inner, 2, max_length=1)
    with pytest.raises(ValueError, match="keep must be None or a multiple of block_size=2"):
        samplers.BlockSampler(inner, 2, max_length=8, keep=3)
    with pytest.raises(ValueError, match="window must be an int >= 2"):
        samplers.SemiAutoregressiveSampler(inner, 2, 1)
    with pytest.raises(ValueError, match="the model's block_size is 2"):
        samplers.BlockSampler(inner, 4).sample(toy_model, 2, 4)
    with pytest.raises(TypeError, match="cache=False"):
        samplers.BlockSampler(inner, 2).sample(samplers.Denoiser(_toy().denoiser), 2, 4)
    with pytest.raises(ValueError, match="does not fit"):
        samplers.BlockSampler(inner, 2).sample(toy_model, 2, 4, prefix=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="stop_token must be None or a token id"):
        samplers.BlockSampler(inner, 2).sample(toy_model, 2, 4, stop_token=VOCAB)
