"""models.BlockDenoiser(mix_across_blocks=True): local mixing that is block-causal (a block's first positions read
the clean tokens just before it), in float64.

References: the window sum of models.local_mixing written out position by position (with the states given to the
left of each run, zeros to the right); a loop over blocks that runs the plain form on [x0^{<b}, x_t^b] (the
training form must equal it); the plain form on the whole prefix (the key/value cache, which keeps each mixing
layer's last input states, must equal it); finite changes of single clean tokens with the attention switched off
(what the mixing alone reads: the clean token before a block with the flag, nothing across the edge without it);
samplers.BlockSampler with and without the cache, sliding included (the same samples).
"""

import pytest
import torch

import ctmc
import models
import samplers
from models.local_mixing import LocalMixing

VOCAB = 7  # clean tokens 0..6, the mask is 7
MASK = VOCAB


def _network(block_size: int, across: bool = True, num_layers: int = 2, max_length: int = 16) -> models.BlockDenoiser:
    torch.manual_seed(0)
    network = models.BlockDenoiser(VOCAB, 16, num_layers, 2, max_length, local_mixing=3, block_size=block_size,
                                   mix_across_blocks=across).double().eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return network


def _pair(batch: int = 3, length: int = 12, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, VOCAB, (batch, length), generator=g)
    return x0, torch.where(torch.rand(batch, length, generator=g) < 0.5, MASK, x0)


def test_mixing_with_states_on_the_left_is_the_window_sum_written_out() -> None:
    torch.manual_seed(3)
    layer = LocalMixing(5, 3).double()
    h = torch.randn(2, 7, 5, dtype=torch.float64)
    left = torch.randn(2, 3, 1, 5, dtype=torch.float64)  # runs [0, 3), [3, 6), [6, 7): one state before each
    out = layer(h, 3, left)
    weight = layer.conv.weight[:, 0, :]  # (H, 3): taps at l - 1, l, l + 1
    reference = h.clone()
    for position in range(7):
        run, start = position // 3, position // 3 * 3
        for tap, neighbour in enumerate((position - 1, position, position + 1)):
            if neighbour == start - 1:
                value = left[:, run, 0]
            elif start <= neighbour < min(start + 3, 7):
                value = h[:, neighbour]
            else:
                continue  # past the run's end: zero
            reference[:, position] += weight[:, tap] * value
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer(h, 3, torch.zeros_like(left)), layer(h, 3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_training_form_equals_a_loop_over_clean_prefix_and_noisy_block(block_size: int) -> None:
    network = _network(block_size)
    x0, x_t = _pair()
    out = network(x_t, clean=x0)
    for start in range(0, x0.shape[1], block_size):
        reference = network(torch.cat([x0[:, :start], x_t[:, start : start + block_size]], dim=1))[:, start:]
        torch.testing.assert_close(out[:, start : start + block_size], reference, rtol=0, atol=1e-12)


def test_cache_with_mixing_tails_equals_running_the_network_on_the_whole_prefix() -> None:
    network = _network(4)
    x0, x_t = _pair()
    context, block = x0[:, :8], x_t[:, 8:12]
    at_once = network.encode_context(context)
    incremental = network.encode_context(context[:, 4:], network.encode_context(context[:, :4]))
    assert len(at_once.tails) == 3 and at_once.tails[0].shape == (3, 1, 16)  # embeddings + 2 blocks, W = 1
    for first, second in zip(at_once.tails, incremental.tails, strict=True):
        torch.testing.assert_close(first, second, rtol=0, atol=1e-12)
    reference = network(torch.cat([context, block], dim=1))[:, 8:]
    torch.testing.assert_close(network.denoise_block(block, at_once), reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(network.denoise_block(block, incremental), reference, rtol=0, atol=1e-12)
    rows = torch.tensor([2, 0])
    torch.testing.assert_close(network.denoise_block(block[rows], at_once.select(rows)), reference[rows], rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("across", [True, False])
@torch.no_grad()
def test_with_the_attention_off_a_block_reads_the_clean_token_before_it_only_with_the_flag(across: bool) -> None:
    """One layer (two mixing layers: the embeddings and before the block), attention output zeroed: x_t position
    4 (the first of block 1, size 4) then depends on x0 only through mixing: x0[3] and x0[2] (two hops) with the
    flag, nothing without it; never on x0 at positions >= 4."""
    network = _network(4, across, num_layers=1)
    with torch.no_grad():
        network.trunk.blocks[0].attention.out.weight.zero_()
    x0, x_t = _pair()
    base = network(x_t, clean=x0)[:, 4]
    for position in range(12):
        changed = x0.clone()
        changed[:, position] = (x0[:, position] + 1) % VOCAB
        moved = float((network(x_t, clean=changed)[:, 4] - base).abs().amax())
        assert (moved > 0) == (across and position in (2, 3)), (position, moved)


@pytest.mark.parametrize("inner", ["first-hitting", "euler"])
def test_block_sampler_with_and_without_the_cache_gives_the_same_samples(inner: str) -> None:
    network = _network(2, max_length=8)
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    sampler = samplers.FirstHittingSampler(process) if inner == "first-hitting" else samplers.EulerSampler(process, 4)
    drawn = [samplers.BlockSampler(sampler, 2, max_length=8, cache=cache).generate(
        network, 3, 14, prefix=torch.tensor([1, 2, 3]), generator=torch.Generator().manual_seed(5)).tokens
        for cache in (True, False)]  # 14 tokens with a context of 8: the context slides
    assert torch.equal(drawn[0], drawn[1]) and bool((drawn[0][:, :3] == torch.tensor([1, 2, 3])).all())
