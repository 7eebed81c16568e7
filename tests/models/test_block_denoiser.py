"""models.BlockDenoiser (BD3-LM, Arriola et al. 2025), in float64.

References: the attention masks written out position by position from their definitions; RADDDenoiser with the
same weights (block_size >= L); a loop over blocks that runs the plain form on [x0^{<b}, x_t^b] (the training
form must equal it); the plain form on the whole prefix (the key/value cache must equal it); finite changes of
single tokens (what each output may depend on, local mixing included).
"""

import pytest
import torch

import models
from models.block_denoiser import block_causal_mask, block_diffusion_mask

VOCAB = 7  # clean tokens 0..6, the mask is 7
MASK = VOCAB


def _network(block_size: int, local_mixing: int = 3, max_length: int = 16, seed: int = 0) -> models.BlockDenoiser:
    torch.manual_seed(seed)
    network = models.BlockDenoiser(VOCAB, 16, 2, 2, max_length, local_mixing=local_mixing, block_size=block_size)
    network = network.double().eval()
    with torch.no_grad():  # leave the zero-initialised head, so that the outputs depend on the trunk
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(seed + 1)))
    return network


def _pair(batch: int = 3, length: int = 12, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, VOCAB, (batch, length), generator=g)
    x_t = torch.where(torch.rand(batch, length, generator=g) < 0.5, MASK, x0)
    return x0, x_t


def test_masks_equal_their_definitions_position_by_position() -> None:
    length, block_size = 6, 2
    mask = block_diffusion_mask(length, block_size)
    for q in range(2 * length):
        for k in range(2 * length):
            q_clean, k_clean = q >= length, k >= length
            q_block, k_block = (q % length) // block_size, (k % length) // block_size
            if not q_clean:  # x_t: its own block (M_BD), and x0 blocks before it (M_OBC)
                allowed = (not k_clean and k_block == q_block) or (k_clean and k_block < q_block)
            else:  # x0: x0 blocks up to its own (M_BC, with the x0 diagonal of M_BD)
                allowed = k_clean and k_block <= q_block
            assert bool(mask[q, k]) == allowed, (q, k)
    queries, keys = torch.arange(4, 9), torch.arange(9)
    causal = block_causal_mask(queries, keys, 3)
    for i, q in enumerate(queries.tolist()):
        for k in keys.tolist():
            assert bool(causal[i, k]) == (k // 3 <= q // 3)


@pytest.mark.parametrize("block_size", [12, 16])
def test_one_block_is_the_radd_denoiser_with_the_same_weights(block_size: int) -> None:
    """block_size >= L: both forms are RADDDenoiser's output, bitwise; RADD checkpoints load as they are."""
    block = _network(block_size)
    radd = models.RADDDenoiser(VOCAB, 16, 2, 2, 16, local_mixing=3).double().eval()
    radd.load_state_dict(block.state_dict(), strict=True)
    x0, x_t = _pair()
    assert torch.equal(block(x_t), radd(x_t))
    assert torch.equal(block(x_t, clean=x0), radd(x_t))


@pytest.mark.parametrize(("block_size", "local_mixing"), [(1, 3), (3, 3), (4, 0), (4, 3), (6, 2)])
def test_training_form_equals_a_loop_over_clean_prefix_and_noisy_block(block_size: int, local_mixing: int) -> None:
    network = _network(block_size, local_mixing)
    x0, x_t = _pair()
    out = network(x_t, clean=x0)
    for start in range(0, x0.shape[1], block_size):
        stop = start + block_size
        reference = network(torch.cat([x0[:, :start], x_t[:, start:stop]], dim=1))[:, start:]
        torch.testing.assert_close(out[:, start:stop], reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(x0.shape, dtype=torch.float64), rtol=0, atol=1e-12)


def test_packed_rows_equal_the_full_output_in_both_forms() -> None:
    network = _network(4)
    x0, x_t = _pair()
    where = x_t == MASK
    torch.testing.assert_close(network(x_t, clean=x0, where=where), network(x_t, clean=x0)[where], rtol=0, atol=1e-12)
    torch.testing.assert_close(network(x_t, where=where), network(x_t)[where], rtol=0, atol=1e-12)


def test_outputs_read_only_what_the_factorisation_allows() -> None:
    """Training form: x_t block b reads x_t block b and x0 blocks < b. Plain form: block b reads blocks <= b;
    changing the first token of block 1 leaves block 0 as it was (width-3 mixing would reach it across the edge)."""
    block_size = 4
    network = _network(block_size)
    x0, x_t = _pair()
    base_pair, base_plain = network(x_t, clean=x0), network(x_t)
    for position in (3, 4, 9):
        block = position // block_size
        changed_clean = x0.clone()
        changed_clean[:, position] = (x0[:, position] + 1) % VOCAB
        changed_noisy = x_t.clone()
        changed_noisy[:, position] = torch.where(x_t[:, position] == MASK, x0[:, position], MASK)
        moved_by_clean = (network(x_t, clean=changed_clean) - base_pair).abs().amax(dim=(0, 2))
        moved_by_noisy = (network(changed_noisy, clean=x0) - base_pair).abs().amax(dim=(0, 2))
        moved_plain = (network(changed_noisy) - base_plain).abs().amax(dim=(0, 2))
        blocks = torch.arange(x0.shape[1]) // block_size
        assert bool((moved_by_clean[blocks <= block] == 0).all()) and bool((moved_by_clean[blocks > block] > 0).all())
        assert bool((moved_by_noisy[blocks != block] == 0).all()) and bool((moved_by_noisy[blocks == block] > 0).all())
        assert bool((moved_plain[blocks < block] == 0).all()) and bool((moved_plain[blocks >= block] > 0).all())


def test_block_size_one_is_causal() -> None:
    """Block size 1: output l of the plain form reads x[:, :l + 1] only (an autoregressive model)."""
    network = _network(1)
    x = _pair(length=8)[1]
    base = network(x)
    for position in range(8):
        changed = x.clone()
        changed[:, position] = (x[:, position] + 1) % (VOCAB + 1)
        moved = (network(changed) - base).abs().amax(dim=(0, 2))
        assert bool((moved[:position] == 0).all()) and bool((moved[position:] > 0).all())


def test_cache_equals_running_the_network_on_the_whole_prefix() -> None:
    block_size = 4
    network = _network(block_size)
    x0, x_t = _pair()
    context, block = x0[:, :8], x_t[:, 8:12]
    at_once = network.encode_context(context)
    incremental = network.encode_context(context[:, 4:], network.encode_context(context[:, :4]))
    assert at_once.length == incremental.length == 8
    for first, second in zip(at_once.keys + at_once.values, incremental.keys + incremental.values, strict=True):
        torch.testing.assert_close(first, second, rtol=0, atol=1e-12)
    reference = network(torch.cat([context, block], dim=1))[:, 8:]
    torch.testing.assert_close(network.denoise_block(block, at_once), reference, rtol=0, atol=1e-12)
    shorter = network(torch.cat([context, block[:, :3]], 1))[:, 8:]
    torch.testing.assert_close(network.denoise_block(block[:, :3], at_once), shorter, rtol=0, atol=1e-12)
    where = block == MASK
    torch.testing.assert_close(network.denoise_block(block, at_once, where), reference[where], rtol=0, atol=1e-12)
    torch.testing.assert_close(network.denoise_block(block[:, :4]), network(block), rtol=0, atol=1e-12)
    rows = torch.tensor([2, 0])
    torch.testing.assert_close(network.denoise_block(block[rows], at_once.select(rows)), reference[rows], rtol=0,
                               atol=1e-12)


def test_bad_input_raises_one_clear_line() -> None:
    for bad in (0, 17, True, 2.0):
        with pytest.raises(ValueError, match=r"block_size must be (an int >= 1|<= max_length=16)"):
            models.BlockDenoiser(VOCAB, 16, 1, 2, 16, block_size=bad)  # type: ignore[arg-type]
    network = _network(4)
    x0, x_t = _pair()
    with pytest.raises(ValueError, match="multiple of block_size=4"):
        network(x_t[:, :10], clean=x0[:, :10])
    with pytest.raises(ValueError, match="clean must hold token ids in"):
        network(x_t, clean=x_t)
    with pytest.raises(ValueError, match="clean must have the shape of x"):
        network(x_t, clean=x0[:2])
    with pytest.raises(ValueError, match="whole blocks"):
        network.encode_context(x0[:, :6])
    with pytest.raises(ValueError, match="exceed max_length=16"):
        network.denoise_block(x_t[:, :4], network.encode_context(x0[:, :12].repeat(1, 2)[:, :16]))
    with pytest.raises(ValueError, match=r"cache\.select"):
        network.denoise_block(x_t[:2, :4], network.encode_context(x0[:, :4]))
    with pytest.raises(ValueError, match="one block"):
        network.denoise_block(x_t[:, :5], network.encode_context(x0[:, :4]))
