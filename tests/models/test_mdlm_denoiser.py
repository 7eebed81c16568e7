"""MDLMDenoiser, MDLM's SUBS denoiser. References: the SUBS rule written out (log_softmax of the trunk's logits at a
masked position; log one-hot with MDLM's -1e6 at a clean one), the full output selected at `where`, plain autograd.
Its equality with MDLM's own forward is in test_pretrained_mdlm.py."""

import pytest
import torch

from models import MDLMDenoiser
from models.mdlm import CARRY_OVER_LOG_ZERO

VOCAB = 9  # clean tokens; the mask is 9
BATCH, LENGTH = 3, 10


def _network(time_conditioning: bool = False, seed: int = 0) -> MDLMDenoiser:
    torch.manual_seed(seed)
    network = MDLMDenoiser.from_preset("tiny", VOCAB, time_conditioning=time_conditioning)
    with torch.no_grad():
        for parameter in network.parameters():  # move the zero-initialised gates and head off zero
            parameter.add_(0.2 * torch.randn(parameter.shape))
    return network.double()


def _tokens(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator)
    return torch.where(torch.rand(BATCH, LENGTH, generator=generator) < 0.5, VOCAB, clean)


def test_subs_rule_masked_softmax_and_clean_carry_over():
    """Masked rows: log_softmax of the trunk logits at noise level 0; clean rows: 0 at the token, -1e6 elsewhere."""
    network, x = _network(), _tokens()
    with torch.no_grad():
        out = network(x)
        logits = network.trunk(x, network.noise_embedding(torch.zeros(BATCH, dtype=torch.float64)))
    assert out.shape == (BATCH, LENGTH, VOCAB) and out.dtype == torch.float64
    masked = x == VOCAB
    assert masked.any() and (~masked).any()
    torch.testing.assert_close(out[masked], torch.log_softmax(logits[masked], -1), rtol=0, atol=1e-12)
    carry = torch.full((int((~masked).sum()), VOCAB), CARRY_OVER_LOG_ZERO, dtype=torch.float64)
    carry.scatter_(-1, x[~masked][:, None], 0.0)
    assert torch.equal(out[~masked], carry)


def test_where_packs_the_full_output():
    """where (B, L) bool: the packed rows equal full[where] (float64, 1e-12), masked and clean rows alike."""
    network, x = _network(time_conditioning=True), _tokens(seed=2)
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    where = torch.rand(BATCH, LENGTH, generator=torch.Generator().manual_seed(3)) < 0.6
    with torch.no_grad():
        torch.testing.assert_close(network(x, sigma, where=where), network(x, sigma)[where], rtol=0, atol=1e-12)
        only_masked = x == VOCAB
        torch.testing.assert_close(
            network(x, sigma, where=only_masked), network(x, sigma)[only_masked], rtol=0, atol=1e-12
        )


def test_time_conditioning():
    """Off: sigma is ignored (MDLM feeds 0). On: the output depends on sigma, which is required and checked."""
    x = _tokens()
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        off = _network(time_conditioning=False)
        assert torch.equal(off(x), off(x, sigma))
        on = _network(time_conditioning=True)
        assert (on(x, sigma) - on(x, 2 * sigma))[x == VOCAB].abs().max() > 1e-3
    with pytest.raises(TypeError, match="sigma is required"):
        on(x)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        on(x, -sigma)


def test_clean_rows_carry_no_gradient():
    """Backward through a mixed batch: finite gradients; a loss on the clean rows only has zero gradient."""
    network, x = _network(), _tokens()
    masked = x == VOCAB
    network(x)[masked].logsumexp(-1).sum().backward()  # 0 up to round-off, but a full backward pass
    assert all(torch.isfinite(p.grad).all() for p in network.parameters())
    network.zero_grad()
    network(x)[~masked].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in network.parameters())


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size must be an int >= 1"):
        MDLMDenoiser(0)
    with pytest.raises(TypeError, match="time_conditioning must be a bool"):
        MDLMDenoiser(4, time_conditioning=1)
