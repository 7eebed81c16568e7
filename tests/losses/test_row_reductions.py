"""The lean per-position reductions against plain torch formulas (values) and finite differences (gradients),
and the score-entropy losses built on them against gradcheck."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ctmc
import losses
from ctmc.row_reductions import bregman_statistics, log_mixture_statistics, logsumexp_statistics


def _inputs(seed, n=6, k=3):
    g = torch.Generator().manual_seed(seed)
    output = (3 * torch.randn(2, 4, n, dtype=torch.float64, generator=g)).requires_grad_(True)
    index = torch.randint(0, n, (2, 4, k), generator=g)
    index[0, 0, 1] = index[0, 0, 0]  # a repeated id: its gradients must add up
    return output, index, g


def _assert_retained_backwards_match(statistic, expected, output, index, g):
    """statistic: (value, gathered) of a row reduction of `output`; expected: its plain-torch value. Reference:
    autograd through expected and gather (float64). The first backward rescales the forward's buffer in place; a
    second backward through the retained graph recomputes it: both must agree with the reference."""
    grad_value = torch.randn(expected.shape, dtype=torch.float64, generator=g)
    grad_gathered = torch.randn(index.shape, dtype=torch.float64, generator=g)
    reference = torch.autograd.grad(
        (expected * grad_value).sum() + (output.gather(-1, index) * grad_gathered).sum(), output
    )[0]
    value, gathered = statistic
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    objective = (value * grad_value).sum() + (gathered * grad_gathered).sum()
    first = torch.autograd.grad(objective, output, retain_graph=True)[0]
    second = torch.autograd.grad(objective, output)[0]
    torch.testing.assert_close(first, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(second, reference, rtol=1e-12, atol=1e-12)


@given(seed=st.integers(0, 10_000), width=st.integers(1, 6))
def test_logsumexp_statistics_values_and_gradients(seed, width):
    # Reference: torch.logsumexp and gather (values, exact to 1e-12); gradcheck (finite differences).
    output, index, _ = _inputs(seed)
    stats = logsumexp_statistics(output, index, width)
    torch.testing.assert_close(stats.lse, torch.logsumexp(output[..., :width], -1), rtol=1e-12, atol=1e-12)
    assert torch.equal(stats.gathered, output.gather(-1, index))
    assert torch.autograd.gradcheck(lambda o: tuple(logsumexp_statistics(o, index, width)), (output,))


@pytest.mark.parametrize("width", [6, 4])
def test_logsumexp_statistics_gradient_buffer_matches_torch_logsumexp(width):
    # Reference: autograd through torch.logsumexp and gather, float64. The first backward rescales the forward's
    # e^{o - max} buffer in place; a second backward through the retained graph recomputes it: both must agree.
    output, index, g = _inputs(3)
    output.data[1, 2, :] = float("-inf")  # a row of zeros in probability: lse = -inf, no gradient there
    output.data[1, 2, 0] = 0.5
    expected_lse = torch.logsumexp(output[..., :width], -1)
    _assert_retained_backwards_match(logsumexp_statistics(output, index, width), expected_lse, output, index, g)
    fresh = output.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda o: logsumexp_statistics(o, index, width).lse, (fresh,))


@given(seed=st.integers(0, 10_000))
def test_bregman_statistics_values_and_gradients(seed):
    # Reference: sum of e^u - u - 1 over a boolean mask of the non-excluded states; gradcheck.
    output, index, g = _inputs(seed)
    base = torch.randn(2, 4, dtype=torch.float64, generator=g)
    exclude = index[..., :2]
    stats = bregman_statistics(output, base, exclude, index)
    u = output - base[..., None]
    keep = torch.ones_like(output, dtype=torch.bool).scatter(-1, exclude, False)
    expected = torch.where(keep, torch.expm1(u) - u, 0.0).sum(-1)
    torch.testing.assert_close(stats.total, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(stats.gathered, output.gather(-1, index))
    assert torch.autograd.gradcheck(lambda o: tuple(bregman_statistics(o, base, exclude, index)), (output,))


def test_bregman_statistics_gradient_buffer_matches_plain_autograd():
    # Reference: autograd through expm1(u) - u over the non-excluded states and gather, float64. The first
    # backward rescales the forward's expm1 buffer in place; a second backward through the retained graph
    # recomputes it: both must agree with the reference.
    output, index, g = _inputs(5)
    base = torch.randn(2, 4, dtype=torch.float64, generator=g)
    exclude = torch.randint(0, 6, (2, 4, 2), generator=g)
    keep = torch.ones_like(output, dtype=torch.bool).scatter_(-1, exclude, False)
    u = output - base[..., None]
    expected_total = torch.where(keep, torch.expm1(u) - u, torch.zeros_like(u)).sum(-1)
    _assert_retained_backwards_match(bregman_statistics(output, base, exclude, index), expected_total, output, index,
                                     g)


@given(seed=st.integers(0, 10_000), log_scale=st.floats(-5.0, 30.0))
def test_log_mixture_statistics_values_and_gradients(seed, log_scale):
    # Reference: sum_y log1p(w softmax(o)_y) written directly; gradcheck.
    output, index, g = _inputs(seed)
    log_weight = log_scale + torch.randn(2, 4, dtype=torch.float64, generator=g)
    stats = log_mixture_statistics(output, log_weight, index)
    expected = torch.log1p(log_weight.exp()[..., None] * torch.softmax(output, -1)).sum(-1)
    torch.testing.assert_close(stats.total, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.lse, torch.logsumexp(output, -1), rtol=1e-12, atol=1e-12)
    assert torch.equal(stats.gathered, output.gather(-1, index))
    assert torch.autograd.gradcheck(lambda o: tuple(log_mixture_statistics(o, log_weight, index)), (output,))


def test_log_mixture_statistics_blocked_backward(monkeypatch):
    # Reference: gradcheck with row blocks of 2 rows (6 states), so that the backward loop runs several blocks.
    import ctmc.row_reductions as row_reductions

    monkeypatch.setattr(row_reductions, "_BLOCK_ELEMENTS", 12)
    output, index, g = _inputs(3)
    log_weight = 4 * torch.randn(2, 4, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda o: tuple(log_mixture_statistics(o, log_weight, index)), (output,))


def test_log_mixture_statistics_overflow_branch():
    # A weight beyond float32's exp range takes the softplus branch; reference: the float64 value.
    output, index, _ = _inputs(0)
    log_weight = torch.full((2, 4), 100.0, dtype=torch.float64)
    single = log_mixture_statistics(output.detach().float(), log_weight, index).total
    double = log_mixture_statistics(output.detach(), log_weight, index).total
    assert bool(torch.isfinite(single).all())
    torch.testing.assert_close(single.double(), double, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chain", ["absorbing", "uniform"])
def test_score_entropy_gradient_matches_finite_differences(chain):
    # Reference: torch.autograd.gradcheck (central finite differences, float64) through the custom backward.
    rate_matrix = ctmc.Absorbing(4) if chain == "absorbing" else ctmc.Uniform(5)
    process = ctmc.ForwardProcess(rate_matrix, ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, loss.num_clean_states, (3, 5), generator=g)
    t = torch.tensor([0.2, 0.6, 0.95], dtype=torch.float64)
    x_t = process.sample(x0, t[:, None], generator=g)
    x_t[0, 0] = process.num_states - 1
    if chain == "absorbing":
        x0[0, 0] = 0
    else:
        x_t[1, :] = x0[1, :]  # both branches of the uniform ratio: x_t = x0 and x_t != x0
    output = torch.randn(3, 5, process.num_states, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda out: loss(out, x0, x_t, t), (output,))


@pytest.mark.parametrize("cache_elements", [1, 12, 1 << 18])
def test_forward_row_blocks_give_the_unblocked_values(monkeypatch, cache_elements):
    # Reference: the plain torch formulas (float64), with the forward's cache blocks of 1 row, 2 rows (12
    # entries of 6 states) and the whole tensor, on a non-contiguous output (a transposed view).
    import ctmc.row_reductions as row_reductions

    monkeypatch.setattr(row_reductions, "_CACHE_ELEMENTS", cache_elements)
    g = torch.Generator().manual_seed(7)
    output = torch.randn(4, 3, 6, dtype=torch.float64, generator=g).transpose(0, 1).requires_grad_(True)
    assert not output.is_contiguous()
    index = torch.randint(0, 6, (3, 4, 2), generator=g)
    base = torch.randn(3, 4, dtype=torch.float64, generator=g)
    lse = logsumexp_statistics(output, index, 5)
    torch.testing.assert_close(lse.lse, torch.logsumexp(output[..., :5], -1), rtol=1e-12, atol=1e-12)
    bregman = bregman_statistics(output, base, index, index)
    u = output - base[..., None]
    keep = torch.ones_like(output, dtype=torch.bool).scatter(-1, index, False)
    torch.testing.assert_close(bregman.total, torch.where(keep, torch.expm1(u) - u, 0.0).sum(-1), rtol=1e-12,
                               atol=1e-12)
    assert torch.autograd.gradcheck(lambda o: logsumexp_statistics(o, index, 5).lse, (output,))
    assert torch.autograd.gradcheck(lambda o: bregman_statistics(o, base, index, index).total, (output,))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_reductions_refuse_nan_and_inf_they_read_and_ignore_states_they_do_not(bad):
    # A NaN or +inf in a state the reduction reads raises (it would make the row's gradient NaN even where the
    # loss weights the row by 0); one in a state it does not read (beyond width, an excluded state) gives the
    # values without it and a gradient of exactly 0 there.
    output, index, g = _inputs(11)
    base = torch.randn(2, 4, dtype=torch.float64, generator=g)
    exclude = torch.tensor([0, 1]).expand(2, 4, 2)
    for column in (2, 5):
        poisoned = output.detach().clone()
        poisoned[1, 3, column] = bad
        with pytest.raises(ValueError, match="NaN or \\+inf"):
            logsumexp_statistics(poisoned, index, 6)
        with pytest.raises(ValueError, match="NaN or \\+inf"):
            bregman_statistics(poisoned, base, exclude, index[..., 2:])
    clean = output.detach().clone().requires_grad_(True)
    ids = index[..., 2:].clamp(1, 4)
    for column, statistic in ((5, lambda o: logsumexp_statistics(o, ids, 5).lse),  # beyond width 5
                              (0, lambda o: bregman_statistics(o, base, exclude, ids).total)):  # excluded
        poisoned = output.detach().clone()
        poisoned[..., column] = bad
        poisoned.requires_grad_(True)
        value = statistic(poisoned)
        torch.testing.assert_close(value, statistic(clean), rtol=1e-12, atol=1e-12)
        (grad,) = torch.autograd.grad(value.sum(), poisoned)
        assert bool(torch.isfinite(grad).all()) and bool((grad[..., column] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_expm1_identity_is_as_exact_as_torch_expm1(dtype):
    # Reference: torch.expm1 in float64 of the same inputs (exact inputs; float32 results compared in ulps of the
    # result). The in-cache form tanh(u / 2) (1 + e^u) must stay within 2 ulp everywhere, including tiny |u|
    # (where e^u - 1 loses every digit) and large u, and give the special values exactly.
    from ctmc.row_reductions import _expm1_

    u = torch.cat([torch.linspace(-100.0, 88.0, 200_001, dtype=torch.float64),
                   torch.logspace(-30, 1, 20_001, dtype=torch.float64),
                   -torch.logspace(-30, 1, 20_001, dtype=torch.float64)]).to(dtype)
    truth = torch.expm1(u.double())
    got = _expm1_(u.clone(), torch.empty_like(u)).double()
    ulp = torch.finfo(dtype).eps * truth.abs()
    assert bool(((got - truth).abs() <= 2 * ulp).all())
    special = torch.tensor([0.0, -0.0, float("-inf"), float("nan"), 1000.0], dtype=dtype)
    out = _expm1_(special.clone(), torch.empty_like(special))
    assert out[0] == 0 and out[1] == 0 and out[2] == -1 and torch.isnan(out[3]) and out[4] == float("inf")
