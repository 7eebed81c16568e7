"""ARTransformer, the autoregressive baseline. References: causality by perturbing later tokens, the chain
rule evaluated one prefix at a time (next_token_log_probs), enumeration of every sequence of a tiny vocabulary
(the probabilities sum to 1), the attention with an explicit -inf mask, and hand-written cross-entropies."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from models import ARTransformer, RADDDenoiser
from models.attention import SelfAttention
from models.rotary import apply_rotary, rotary_rotation

VOCAB, BATCH, LENGTH = 5, 3, 7


def _model(**overrides: object) -> ARTransformer:
    """A float64 tiny model with noisy parameters (so that the zero-initialised head hides nothing)."""
    torch.manual_seed(0)
    arguments = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "max_length": 8, **overrides}
    model = ARTransformer(VOCAB, **arguments).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def _tokens(seed: int = 0, length: int = LENGTH) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, length), generator=torch.Generator().manual_seed(seed))


def test_causal_attention_matches_an_explicit_mask() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(8, 2, causal=True).double()
    h = torch.randn(2, 5, 8, dtype=torch.float64)
    rotation = rotary_rotation(torch.arange(5, dtype=torch.float64), 4)
    qkv = attention.qkv(h).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    query, key, value = apply_rotary(qkv[0], rotation), apply_rotary(qkv[1], rotation), qkv[2]
    scores = query @ key.transpose(-1, -2) / 2.0  # sqrt(head size 4)
    scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    expected = attention.out((scores.softmax(-1) @ value).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attention(h, rotation), expected, rtol=0, atol=1e-12)


def test_row_l_depends_on_earlier_tokens_only() -> None:
    model = _model()
    x = _tokens()
    with torch.no_grad():
        out = model(x)
    for position in range(LENGTH):
        changed = x.clone()
        changed[:, position] = (changed[:, position] + 1) % VOCAB
        with torch.no_grad():
            moved = (model(changed) - out).abs().amax(dim=(0, 2))  # (L,)
        assert bool((moved[: position + 1] == 0).all()), f"rows <= {position} saw token {position}"
        if position + 1 < LENGTH:
            assert float(moved[position + 1]) > 1e-6, "the next row must see the changed token"


def test_forward_is_normalised_and_nll_is_the_gathered_cross_entropy() -> None:
    model = _model()
    x = _tokens()
    log_probs = model(x)
    assert log_probs.shape == (BATCH, LENGTH, VOCAB) and log_probs.dtype == torch.float64
    assert float(log_probs.detach().logsumexp(-1).abs().max()) < 1e-12
    by_hand = -log_probs.gather(-1, x[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(model.nll(x), by_hand, rtol=0, atol=1e-12)


def test_nll_equals_the_chain_rule_one_prefix_at_a_time() -> None:
    model = _model()
    x = _tokens(seed=3)
    chained = torch.zeros(BATCH, dtype=torch.float64)
    for k in range(LENGTH):
        chained -= model.next_token_log_probs(x[:, :k]).gather(-1, x[:, k : k + 1]).squeeze(-1)
    torch.testing.assert_close(model.nll(x), chained, rtol=0, atol=1e-11)


def test_probabilities_of_all_sequences_sum_to_one() -> None:
    """Enumeration: 5^3 sequences of length 3; exp(-nll) is a probability law (BOS makes x_0 modelled too)."""
    model = _model()
    every = torch.tensor(list(itertools.product(range(VOCAB), repeat=3)))
    total = torch.exp(-model.nll(every)).detach().sum()
    assert abs(float(total) - 1.0) < 1e-12


def test_uniform_at_init_and_float32_default() -> None:
    model = ARTransformer(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=8)
    x = _tokens()
    nll = model.nll(x)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, torch.full((BATCH,), LENGTH * math.log(VOCAB)))


def test_trains_to_a_deterministic_sequence() -> None:
    """Cross-entropy overfitting: one repeated sequence is learnt to below 0.05 nats in total."""
    torch.manual_seed(0)
    model = ARTransformer(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=8)
    x = torch.tensor([[1, 3, 0, 4, 4, 2]]).repeat(4, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(150):
        optimiser.zero_grad()
        model.nll(x).mean().backward()
        optimiser.step()
    assert float(model.nll(x).detach().mean()) < 0.05


def test_presets_match_the_radd_denoiser_parameter_count() -> None:
    """Same trunk shapes: V + 1 embedding rows (BOS / mask), V outputs, no conditioning."""
    for name in ("tiny", "small"):
        for tie in (False, True):
            with torch.device("meta"):
                ar = ARTransformer.from_preset(name, 50_257, tie_weights=tie)
                radd = RADDDenoiser.from_preset(name, 50_257, tie_weights=tie)
            assert ar.num_parameters == radd.num_parameters


def test_bad_input_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"x must hold token ids in \[0, 5\) \(vocab_size=5\)"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="x has length 9 > max_length=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(TypeError, match=r"pass x.long\(\)"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least one token"):
        model.nll(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"prefix has length 8.*shorter than max_length=8"):
        model.next_token_log_probs(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size must be an int >= 1"):
        ARTransformer(0)


def test_cross_entropy_path_matches_log_softmax_in_float32() -> None:
    model = ARTransformer(VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_length=8, tie_weights=True)
    x = _tokens()
    expected = F.nll_loss(model(x).flatten(0, 1), x.flatten(), reduction="none").view(x.shape).sum(-1)
    torch.testing.assert_close(model.nll(x), expected)
