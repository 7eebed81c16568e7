"""float32 stability at extreme times, bad inputs raising clear errors, and the evaluation units."""

import math

import pytest
import torch

import ctmc
import losses

TIMES = [1e-6, 1e-3, 0.5, 1 - 1e-6, 1.0]
VOCAB = 7


def _losses():
    absorbing = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    uniform = ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.Geometric())
    return {
        "score_entropy_absorbing": losses.ScoreEntropy(absorbing),
        "score_entropy_uniform": losses.ScoreEntropy(uniform),
        "tdce": losses.TDCE(absorbing),
        "lambda_dce": losses.LambdaDCE(absorbing),
        "mdlm": losses.MDLMNELBO(absorbing),
    }


@pytest.mark.parametrize("name", sorted(_losses()))
@pytest.mark.parametrize("time", TIMES)
def test_float32_values_and_gradients_are_finite(name, time):
    # Reference: finiteness (the property itself); inputs are realistic network outputs and exact-ish scores.
    loss = _losses()[name]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, loss.num_clean_states, (4, 16), generator=g)
    t = torch.full((4,), time, dtype=torch.float32)
    x_t = loss.process.sample(x0, t[:, None], generator=g)
    x_t[0, 0] = loss.num_states - 1  # at least one masked / moved position, even at t = 1e-6
    if isinstance(loss.process.rate_matrix, ctmc.Absorbing):
        x0[0, 0] = 0
    raw = torch.randn(4, 16, loss.output_width, generator=g) * 5
    if loss.output_kind == "log_probs":
        raw = torch.log_softmax(raw, -1)
    output = raw.clone().requires_grad_(True)
    value = loss(output, x0, x_t, t)
    value.sum().backward()
    assert value.dtype == torch.float32
    assert bool(torch.isfinite(value).all()) and bool(torch.isfinite(output.grad).all())


D3PM_STEPS = 1000


def _d3pm_losses():
    absorbing = ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(VOCAB), D3PM_STEPS)
    uniform = ctmc.DiscreteTimeChain(ctmc.Uniform(VOCAB), torch.linspace(1e-4, 0.05, D3PM_STEPS))
    return {"absorbing": losses.D3PMLoss.from_chain(absorbing), "uniform": losses.D3PMLoss.from_chain(uniform)}


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
@pytest.mark.parametrize("step", [1, 2, D3PM_STEPS // 2, D3PM_STEPS])
def test_d3pm_float32_values_and_gradients_are_finite(kind, step):
    # Reference: finiteness; steps 1 (reconstruction), 2, T/2 and T (beta_T = 1 for absorbing); logits of scale 5.
    loss = _d3pm_losses()[kind]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, loss.num_clean_states, (4, 16), generator=g)
    i = torch.full((4,), step)
    x_t = loss.chain.sample(x0, i[:, None], generator=g)
    x_t[0, 0] = VOCAB if kind == "absorbing" else (x0[0, 0] + 1) % VOCAB  # at least one corrupted position
    output = (torch.randn(4, 16, loss.num_states, generator=g) * 5).requires_grad_(True)
    t = i / D3PM_STEPS
    value = loss(output, x0, x_t, t)
    value.sum().backward()
    assert value.dtype == torch.float32
    assert bool(torch.isfinite(value).all()) and bool(torch.isfinite(output.grad).all())
    reference = loss(output.detach().double(), x0, x_t, t)  # float64 value: float32 agrees to 1e-4 relative
    torch.testing.assert_close(value.double(), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("time", TIMES)
def test_score_entropy_float32_near_zero_at_true_ratio(time):
    # Reference: the float64 value of the same loss (0 at the true ratio); float32 must agree to 1e-3 relative to r.
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    x0 = torch.arange(VOCAB)[None].repeat(2, 1)
    x_t = torch.full_like(x0, VOCAB)
    t = torch.full((2,), time)
    log_r = losses.log_mask_ratio(process.total(t.double())).float()
    exact = log_r[:, None, None].expand(2, VOCAB, 1)
    output = torch.full((2, VOCAB, VOCAB + 1), -1e4).scatter(-1, x0[..., None], exact)
    value = loss(output, x0, x_t, t)
    scale = process.sigma(t.double()) * log_r.double().exp() * VOCAB
    assert bool((value.double() <= 1e-4 * scale).all())


def _valid():
    process = ctmc.ForwardProcess(ctmc.Absorbing(5), ctmc.LogLinear())
    x0 = torch.randint(0, 5, (2, 3), generator=torch.Generator().manual_seed(0))
    x_t = x0.clone()
    x_t[:, 0] = 5
    return process, x0, x_t, torch.tensor([0.3, 0.9])


@pytest.mark.parametrize("cls", [losses.ScoreEntropy, losses.TDCE, losses.LambdaDCE, losses.MDLMNELBO])
def test_bad_inputs_raise(cls):
    process, x0, x_t, t = _valid()
    loss = cls(process)
    width = loss.output_width
    good = torch.log_softmax(torch.randn(2, 3, width), -1)
    loss(good, x0, x_t, t)  # the valid call works
    cases = [
        (ValueError, "shape", (torch.zeros(2, 3, width + 1), x0, x_t, t)),
        (ValueError, "same shape", (good, x0, x_t[:, :2], t)),
        (ValueError, "outside", (good, x0 + 10, x_t, t)),
        (ValueError, "mask is not a data token", (good, x_t, x_t, t)),
        (ValueError, "outside", (good, x0, x_t - 10, t)),
        (ValueError, r"\(0, 1\]", (good, x0, x_t, torch.tensor([0.0, 0.5]))),
        (ValueError, r"\(0, 1\]", (good, x0, x_t, torch.tensor([0.5, 1.5]))),
        (ValueError, r"\(0, 1\]", (good, x0, x_t, torch.tensor([float("nan"), 0.5]))),
        (ValueError, "shape", (good, x0, x_t, torch.tensor([0.5]))),
        (TypeError, "floating", (good, x0, x_t, torch.tensor([1, 1]))),
        (TypeError, "integer", (good, x0.float(), x_t, t)),
        (ValueError, "NaN", (good.clone().index_fill_(0, torch.tensor([1]), float("nan")), x0, x_t, t)),
        (ValueError, "NaN", (good.clone().index_fill_(0, torch.tensor([1]), float("inf")), x0, x_t, t)),
        (ValueError, "not masked", (good, x0, (x0 + 1) % 5, t)),
    ]
    for error, message, args in cases:
        with pytest.raises(error, match=message):
            loss(*args)


def test_denoiser_losses_refuse_logits_and_other_chains():
    process, x0, x_t, t = _valid()
    with pytest.raises(ValueError, match="log_softmax"):
        losses.TDCE(process)(torch.randn(2, 3, 5) + 3, x0, x_t, t)
    with pytest.raises(TypeError, match="absorbing"):
        losses.LambdaDCE(ctmc.ForwardProcess(ctmc.Uniform(5), ctmc.LogLinear()))
    with pytest.raises(TypeError, match="ForwardProcess"):
        losses.ScoreEntropy(ctmc.Absorbing(5))
    with pytest.raises(ValueError, match="probability 0"):  # -inf log-probability of the clean token
        losses.TDCE(process)(torch.full((2, 3, 5), -math.log(4)).scatter(-1, x0[..., None], float("-inf")), x0, x_t, t)


def test_d3pm_bad_inputs_raise():
    chain = ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(4), 5)
    loss = losses.D3PMLoss.from_chain(chain)
    x0 = torch.zeros(2, 3, dtype=torch.long)
    logits = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        loss(logits, x0, x0, torch.tensor([0.0, 0.4]))
    with pytest.raises(TypeError, match="floating"):
        loss(logits, x0, x0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="multiple of 1 / T"):
        loss(logits, x0, x0, torch.tensor([0.2, 0.3]))
    with pytest.raises(ValueError, match="mask is not a data token"):
        loss(logits, x0 + 4, x0, torch.tensor([0.2, 0.4]))
    with pytest.raises(ValueError, match="hybrid_weight"):
        losses.D3PMLoss.from_chain(chain, hybrid_weight=-1.0)
    with pytest.raises(ValueError, match="num_steps"):
        losses.D3PMLoss(ctmc.ForwardProcess(ctmc.Absorbing(4), ctmc.LogLinear()), num_steps=0)
    with pytest.raises(ValueError, match="cannot reach from x0"):  # a clean x_t that differs from x0
        loss(logits, x0, x0 + 1, torch.tensor([0.2, 0.4]))
    # Tokens that survive to t = 1 are no bad input: the prior term is the KL to the forward prior, finite (it was
    # the KL to the all-mask limit law, infinite).
    kept = losses.D3PMLoss.from_chain(ctmc.DiscreteTimeChain(ctmc.Absorbing(4), torch.full((3,), 0.2)))
    assert bool(torch.isfinite(kept(logits, x0, torch.full_like(x0, 4), torch.tensor([1 / 3, 1.0]))).all())


def test_sample_time_ranges_and_distributions():
    # References: uniform t has mean 1/2; lambda-DCE's lambda = 1 - exp(-total(t)) is uniform on (0, lambda_1].
    process = ctmc.ForwardProcess(ctmc.Absorbing(5), ctmc.Geometric(1e-3, 8.0))
    g = torch.Generator().manual_seed(0)
    for loss in (losses.TDCE(process), losses.LambdaDCE(process)):
        for antithetic in (False, True):
            t = loss.sample_time(20_000, generator=g, antithetic=antithetic)
            assert t.shape == (20_000,) and bool((t > 0).all()) and bool((t <= 1).all())
    t = losses.TDCE(process).sample_time(20_000, generator=g)
    assert abs(t.double().mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 20_000)
    lam = -torch.expm1(-process.total(losses.LambdaDCE(process).sample_time(20_000, generator=g).double()))
    lam_max = -math.expm1(-float(process.total(torch.tensor(1.0, dtype=torch.float64))))
    assert abs(lam.mean().item() - lam_max / 2) < 5 * lam_max * math.sqrt(1 / 12 / 20_000)
    strata = losses.TDCE(process).sample_time(8, generator=g, antithetic=True).sort().values
    assert torch.equal((strata * 8).floor().long().clamp(max=7), torch.arange(8))  # one time per stratum


def test_bits_and_perplexity():
    # Reference: hand conversion; log(2) nats per token is exactly 1 bit and perplexity 2.
    nats = torch.tensor([10 * math.log(2.0), 20 * math.log(2.0)], dtype=torch.float64)
    torch.testing.assert_close(losses.bits_per_token(nats, 10), torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(losses.perplexity_bound(nats.sum(), 30), torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(losses.bits_per_token(nats, torch.tensor([10, 20])), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="> 0"):
        losses.bits_per_token(nats, 0)
    with pytest.raises(TypeError, match="floating"):
        losses.perplexity_bound(torch.tensor([3]), 2)


@pytest.mark.parametrize("cls", [losses.ScoreEntropy, losses.TDCE, losses.LambdaDCE, losses.MDLMNELBO])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_output_raises_also_at_a_position_the_loss_weights_by_zero(cls, bad):
    # The values are checked only when the loss is not finite or a row reduction refuses a row; a NaN or +inf at
    # an unmasked position (term 0, but a NaN gradient through the row's logsumexp) must raise all the same.
    process, x0, x_t, t = _valid()
    loss = cls(process)
    output = torch.log_softmax(torch.randn(2, 3, loss.output_width), -1)
    output[1, 2, 1] = bad  # position 2 of sequence 1 is unmasked
    assert x_t[1, 2] != process.num_states - 1
    with pytest.raises(ValueError, match="contains NaN or \\+inf"):
        loss(output.requires_grad_(), x0, x_t, t)


@pytest.mark.parametrize("chain", [ctmc.Absorbing(5), ctmc.Uniform(5), ctmc.Hybrid(5, 1.0, 1.0)])
def test_score_entropy_ignores_the_entry_it_does_not_read(chain):
    # Score entropy leaves y = x_t out, so a NaN at x_t (e.g. a network that does not zero it) changes neither the
    # loss nor the gradient, which is exactly 0 there (the closed forms skip their scan of the output for this).
    # On the absorbing chain an unmasked row is read whole by the logsumexp (its term is 0): only the masked rows'
    # mask entry is poisoned there.
    process = ctmc.ForwardProcess(chain, ctmc.LogLinear())
    loss = losses.ScoreEntropy(process)
    assert process.rate_matrix.score_entropy_checks_values
    g = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, loss.num_clean_states, (3, 6), generator=g)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x_t = process.sample(x0, t[:, None], generator=g)
    assert bool((x_t == x0).any()) and bool((x_t != x0).any())
    clean = torch.randn(3, 6, process.num_states, dtype=torch.float64, generator=g).requires_grad_()
    poisoned = clean.detach().clone()
    rows = x_t == chain.mask_index if chain.score_factorises else torch.ones_like(x_t, dtype=torch.bool)
    poisoned[rows, x_t[rows]] = float("nan")
    poisoned.requires_grad_()
    value, expected = loss(poisoned, x0, x_t, t), loss(clean, x0, x_t, t)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(value.sum(), poisoned)
    (reference,) = torch.autograd.grad(expected.sum(), clean)
    assert bool((grad[rows, x_t[rows]] == 0).all())
    reference[rows, x_t[rows]] = 0.0
    torch.testing.assert_close(grad, reference, rtol=1e-12, atol=1e-12)
