"""DiT, the SEDD score network. References: SEDD's model/transformer.py (absorbing "esigm1_log" shift and the
zero at the current token), float64 math.log(math.expm1(.)) for log_expm1, and cross-entropy overfitting."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from models import DiT, log_expm1

VOCAB = 11  # 10 clean tokens + the mask, index 10
BATCH, LENGTH = 3, 9


def _perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Add Gaussian noise to every parameter, so zero-initialised gates and heads no longer hide the trunk."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator)
    sigma = 0.05 + 3 * torch.rand(BATCH, generator=generator)
    return tokens, sigma


def _tiny(**overrides: object) -> DiT:
    torch.manual_seed(0)
    return DiT.from_preset("tiny", VOCAB, **overrides)


@pytest.mark.parametrize("absorbing", [False, True])
@pytest.mark.parametrize("tie_weights", [False, True])
def test_shape_dtype_and_zero_at_current_token(absorbing: bool, tie_weights: bool) -> None:
    model = _perturbed(_tiny(absorbing_parameterization=absorbing, tie_weights=tie_weights))
    tokens, sigma = _inputs()
    out = model(tokens, sigma)
    assert out.shape == (BATCH, LENGTH, VOCAB)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (out.gather(-1, tokens[..., None]) == 0).all()
    off_token = torch.ones_like(out, dtype=torch.bool).scatter(-1, tokens[..., None], False)
    assert (out[off_token] != 0).all()


def test_absorbing_shift_matches_sedd_formula() -> None:
    """With the same weights, absorbing minus plain output = -log(e^sigma - 1) - log(vocab_size - 1)."""
    plain = _perturbed(_tiny())
    absorbing = _tiny(absorbing_parameterization=True)
    absorbing.load_state_dict(plain.state_dict())
    tokens, sigma = _inputs()
    difference = absorbing(tokens, sigma) - plain(tokens, sigma)  # (B, L, V)
    expected = torch.tensor([-math.log(math.expm1(s)) - math.log(VOCAB - 1) for s in sigma.tolist()])
    off_token = torch.ones_like(difference, dtype=torch.bool).scatter(-1, tokens[..., None], False)
    expected_full = expected[:, None, None].expand_as(difference)
    torch.testing.assert_close(difference[off_token], expected_full[off_token], rtol=1e-5, atol=1e-5)


def test_absorbing_output_at_init_is_uniform_denoiser_score() -> None:
    """Zero-initialised head: log s_y = -log(e^sigma - 1) - log(N - 1) = log(p_uniform(y) / (e^sigma - 1))."""
    model = _tiny(absorbing_parameterization=True)
    tokens, sigma = _inputs()
    out = model(tokens, sigma)
    expected = torch.tensor([math.log((1 / (VOCAB - 1)) / math.expm1(s)) for s in sigma.tolist()])
    expected = expected[:, None, None].expand_as(out).scatter(-1, tokens[..., None], 0.0)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(sigma=st.floats(min_value=1e-7, max_value=700.0))
def test_log_expm1_matches_float64_reference(sigma: float) -> None:
    value = log_expm1(torch.tensor([sigma], dtype=torch.float64)).item()
    assert value == pytest.approx(math.log(math.expm1(sigma)), rel=1e-12, abs=1e-12)


def test_log_expm1_float32_is_finite_with_finite_gradients_at_extremes() -> None:
    sigma = torch.tensor([1e-6, 1e-3, 0.5, 1.0, 2.0, 50.0, 200.0, 1e4], requires_grad=True)
    value = log_expm1(sigma)
    value.sum().backward()
    reference = torch.tensor([math.log(math.expm1(s)) if s < 700 else s for s in sigma.tolist()])
    torch.testing.assert_close(value.detach(), reference.float(), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(sigma.grad).all()


def test_output_depends_on_sigma() -> None:
    model = _perturbed(_tiny())
    tokens, sigma = _inputs()
    assert not torch.allclose(model(tokens, sigma), model(tokens, sigma + 1.0))


def test_not_permutation_equivariant() -> None:
    """RoPE makes positions matter: permuting the input positions does not just permute the outputs."""
    model = _perturbed(_tiny()).eval()
    tokens, sigma = _inputs()
    permutation = torch.randperm(LENGTH, generator=torch.Generator().manual_seed(3))
    permuted_then_run = model(tokens[:, permutation], sigma)
    run_then_permuted = model(tokens, sigma)[:, permutation]
    assert (permuted_then_run - run_then_permuted).abs().max() > 1e-3


def test_bf16_autocast_is_finite_and_close_to_float32() -> None:
    model = _perturbed(_tiny(absorbing_parameterization=True))
    tokens, sigma = _inputs()
    reference = model(tokens, sigma)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens, sigma)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # bf16 has ~3 significant digits; the output scale here is O(1).
    torch.testing.assert_close(out, reference, rtol=0.05, atol=0.1)


def test_overfits_one_batch() -> None:
    """Cross-entropy of the outputs (as logits) against x0 on one fixed masked batch falls >= 10x in 150 Adam
    steps (lr 1e-3). Measured on seeds 0..5: 1.2e3x to 1.1e4x (seed 0: ~3e3x), so 10x leaves a wide margin."""
    torch.manual_seed(0)
    clean_tokens, batch, length = 16, 4, 16
    x0 = torch.randint(0, clean_tokens, (batch, length))
    x_t = torch.where(torch.rand(batch, length) < 0.5, clean_tokens, x0)
    sigma = torch.ones(batch)
    model = DiT.from_preset("tiny", clean_tokens + 1, absorbing_parameterization=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        out = model(x_t, sigma)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), x0.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] * 10 <= losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize(
    ("tokens", "error", "message"),
    [
        (torch.zeros(BATCH, LENGTH), TypeError, "x must have dtype torch.long"),
        (torch.zeros(BATCH, LENGTH, dtype=torch.int32), TypeError, "x must have dtype torch.long"),
        (torch.zeros(LENGTH, dtype=torch.long), ValueError, r"x must have shape \(batch, length\)"),
        (torch.full((BATCH, LENGTH), VOCAB), ValueError, r"x must hold token ids in \[0, 11\)"),
        (torch.full((BATCH, LENGTH), -1), ValueError, r"x must hold token ids in \[0, 11\)"),
        (torch.zeros(BATCH, 65, dtype=torch.long), ValueError, "max_length=64"),
    ],
)
def test_rejects_bad_tokens(tokens: torch.Tensor, error: type, message: str) -> None:
    model = _tiny(max_length=64)
    with pytest.raises(error, match=message):
        model(tokens, torch.ones(BATCH))


@pytest.mark.parametrize(
    ("sigma", "absorbing", "error", "message"),
    [
        (1.0, False, TypeError, "sigma must be a torch.Tensor"),
        (torch.ones(BATCH, dtype=torch.long), False, TypeError, "sigma must be a floating-point"),
        (torch.ones(BATCH, 1), False, ValueError, r"sigma must have shape \(batch,\)"),
        (torch.tensor(1.0), False, ValueError, r"sigma must have shape \(batch,\)"),
        (torch.ones(BATCH + 1), False, ValueError, r"sigma must have shape \(batch,\)"),
        (-torch.ones(BATCH), False, ValueError, "sigma must be finite and >= 0"),
        (torch.full((BATCH,), math.nan), False, ValueError, "sigma must be finite and >= 0"),
        (torch.zeros(BATCH), True, ValueError, "sigma must be finite and > 0 with absorbing"),
    ],
)
def test_rejects_bad_sigma(sigma: object, absorbing: bool, error: type, message: str) -> None:
    model = _tiny(absorbing_parameterization=absorbing)
    with pytest.raises(error, match=message):
        model(torch.zeros(BATCH, LENGTH, dtype=torch.long), sigma)


def test_plain_model_accepts_zero_sigma() -> None:
    out = _tiny()(torch.zeros(BATCH, LENGTH, dtype=torch.long), torch.zeros(BATCH))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"vocab_size": 1}, "vocab_size"),
        ({"vocab_size": VOCAB, "hidden_size": 30, "num_heads": 4}, "hidden_size"),
        ({"vocab_size": VOCAB, "hidden_size": 12, "num_heads": 4}, "even head size"),
        ({"vocab_size": VOCAB, "num_layers": 0}, "num_layers"),
        ({"vocab_size": VOCAB, "dropout": 1.0}, "dropout"),
        ({"vocab_size": VOCAB, "cond_dim": 0}, "cond_dim"),
    ],
)
def test_rejects_bad_constructor_arguments(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiT(**arguments)


@pytest.mark.parametrize("zero_at_tokens_already", [True, False])
def test_zero_at_tokens_gradient_is_the_scatter_gradient_without_a_copy(zero_at_tokens_already: bool) -> None:
    # Reference: the gradient of an out-of-place scatter of zeros. When the incoming gradient is already 0 at the
    # tokens (every loss here), the node passes that very tensor on (same storage); otherwise it zeroes a copy.
    from models.dit import zero_at_tokens

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    tokens = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    incoming = torch.randn(7, 5, dtype=torch.float64, generator=g)
    if zero_at_tokens_already:
        incoming.scatter_(-1, tokens[:, None], 0.0)
    rows = zero_at_tokens(weight * 2.0, tokens)
    assert bool((rows.gather(-1, tokens[:, None]) == 0).all())
    passed_on = []
    rows.grad_fn.next_functions[0][0].register_prehook(lambda grads: passed_on.append(grads[0]))
    rows.backward(incoming)
    expected = torch.autograd.grad((weight * 2.0).scatter(-1, tokens[:, None], 0.0), weight, incoming)[0]
    torch.testing.assert_close(weight.grad, expected, rtol=0, atol=0)
    assert (passed_on[0].data_ptr() == incoming.data_ptr()) == zero_at_tokens_already
