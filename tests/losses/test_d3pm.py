"""D3PMLoss against D3PM's own matrices ((1 - beta) I + beta 1 1^T / n; (1 - beta) I + beta 1 e_mask^T), Bayes'
rule by brute force, the discrete-time ELBO of the enumerated reverse chain, and the prior term against
scipy.linalg.expm."""

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st
from losses_brute_force import all_sequences, sequence_index

import ctmc
import losses


def _chain(kind, vocab, steps):
    if kind == "absorbing":
        return ctmc.DiscreteTimeChain.linear_mutual_information(ctmc.Absorbing(vocab), steps)
    betas = torch.linspace(0.05, 0.5, steps, dtype=torch.float64)
    return ctmc.DiscreteTimeChain(ctmc.Uniform(vocab), betas)


def _d3pm_matrices(kind, n, betas):
    """D3PM's one-step matrices Q_1..Q_T and cumulative products Q-bar_0..Q-bar_T, built from the paper's formulas."""
    steps = []
    for beta in betas:
        if kind == "absorbing":
            q = (1 - beta) * np.eye(n)
            q[:, -1] += beta
        else:
            q = (1 - beta) * np.eye(n) + beta / n
        steps.append(q)
    cumulative = [np.eye(n)]
    for q in steps:
        cumulative.append(cumulative[-1] @ q)
    return steps, cumulative


def _bayes_kl(kind, n, betas, probs, x0, x_t, i):
    """Per-position KL(q(x_{i-1} | x_i, x0) || sum_x q(x_{i-1}, x_i | x) p(x)) by brute force."""
    steps, cumulative = _d3pm_matrices(kind, n, betas)
    out = np.zeros(x0.shape)
    for b in range(x0.shape[0]):
        q_i, before = steps[i[b] - 1], cumulative[i[b] - 1]
        for pos in range(x0.shape[1]):
            a, c = x0[b, pos], x_t[b, pos]
            true = before[a] * q_i[:, c]
            true /= true.sum()
            model = (probs[b, pos] @ before) * q_i[:, c]
            model /= model.sum()
            keep = true > 0
            out[b, pos] = np.sum(true[keep] * np.log(true[keep] / model[keep]))
    return out


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 4))
def test_kl_terms_match_brute_force_bayes(kind, seed, vocab):
    # Reference: D3PM's matrices in numpy and Bayes' rule written out; rtol 1e-9 (float64).
    steps = 6
    chain = _chain(kind, vocab, steps)
    loss = losses.D3PMLoss.from_chain(chain, hybrid_weight=0.0)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, loss.num_clean_states, (3, 4), generator=g)
    i = loss.sample_steps(3, generator=g)
    x_t = chain.sample(x0, i[:, None], generator=g)
    logits = torch.randn(3, 4, chain.num_states, dtype=torch.float64, generator=g)
    kl = loss.kl_terms(logits, x0, x_t, i)
    probs = torch.softmax(logits, -1).numpy()
    expected = _bayes_kl(kind, chain.num_states, chain.betas.numpy(), probs, x0.numpy(), x_t.numpy(), i.numpy())
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert bool((kl >= 0).all())
    exact = torch.full_like(logits, float("-inf")).scatter(-1, x0[..., None], 0.0)  # p~(x0) = 1
    # The closed forms reach 0 up to float64 rounding of the logs (terms of order 1): atol 1e-12.
    torch.testing.assert_close(loss.kl_terms(exact, x0, x_t, i), torch.zeros_like(kl), rtol=0, atol=1e-12)
    prior = loss(exact, x0, x_t, i / steps)  # only the (model-independent) prior term is left
    assert torch.allclose(prior, loss.prior_terms(x0).sum(-1))


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_expected_loss_bounds_the_enumerated_reverse_chain(kind):
    # Reference: the model's reverse chain over all n^L sequences (n = 3, L = 2), p(x_T) = prior^L, then
    # p(x_{i-1} | x_i) = prod_l sum_x q(x_{i-1}^l, x_i^l | x) p~(x | x_i) normalised; exact sum over steps.
    vocab, length, steps = (2, 2, 4) if kind == "absorbing" else (3, 2, 4)
    chain = _chain(kind, vocab, steps)
    loss = losses.D3PMLoss.from_chain(chain, hybrid_weight=0.0)
    n = chain.num_states
    xs = all_sequences(n, length)
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(len(xs), length, n))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    step_matrices, cumulative = _d3pm_matrices(kind, n, chain.betas.numpy())
    prior = np.eye(n)[-1] if kind == "absorbing" else np.full(n, 1.0 / n)
    p = np.prod(prior[xs], axis=1)
    for i in range(steps, 0, -1):
        move = np.ones((len(xs), len(xs)))
        for pos in range(length):
            per_state = (probs[:, pos] @ cumulative[i - 1]) * step_matrices[i - 1][:, xs[:, pos]].T  # (N, n)
            norm = per_state.sum(-1, keepdims=True)  # 0 for states x_i that step i cannot produce
            per_state = np.divide(per_state, norm, out=np.zeros_like(per_state), where=norm > 0)
            move *= per_state[:, xs[:, pos]]
        p = p @ move
    clean = all_sequences(loss.num_clean_states, length)
    nll = -np.log(p[sequence_index(clean, n)])
    # Exact expectation of forward over i ~ U{1..T} and x_i ~ q(x_i | x0), by enumeration.
    bound = np.zeros(len(clean))
    for i in range(1, steps + 1):
        q = np.ones((len(clean), len(xs)))
        for pos in range(length):
            q *= cumulative[i][clean[:, pos]][:, xs[:, pos]]
        a, b = np.nonzero(q > 0)
        values = loss(
            torch.as_tensor(logits[b]),
            torch.as_tensor(clean[a]),
            torch.as_tensor(xs[b]),
            torch.full((len(a),), i / steps, dtype=torch.float64),
        ).numpy()
        np.add.at(bound, a, q[a, b] * values / steps)
    assert np.all(bound >= nll - 1e-9)
    assert np.mean(bound - nll) > 1e-3


def test_hybrid_term_adds_cross_entropy():
    # Reference: -log softmax(logits)[x0] summed over positions, times hybrid_weight.
    chain = _chain("uniform", 3, 5)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 3, (4, 6), generator=g)
    i = torch.tensor([1, 2, 5, 3])
    x_t = chain.sample(x0, i[:, None], generator=g)
    logits = torch.randn(4, 6, 3, dtype=torch.float64, generator=g)
    t = i / chain.num_steps
    difference = losses.D3PMLoss.from_chain(chain, 0.3)(logits, x0, x_t, t) - losses.D3PMLoss.from_chain(chain, 0.0)(
        logits, x0, x_t, t
    )
    ce = -torch.log_softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(difference, 0.3 * ce, rtol=1e-12, atol=1e-12)


def _closed_form_chain(kind, vocab, steps, final_beta_one):
    """Absorbing: D3PM's 1/(T - i + 1) schedule; Uniform: linear betas, optionally ending with beta_T = 1."""
    if kind == "absorbing":
        return _chain(kind, vocab, steps)
    betas = torch.linspace(0.02, 0.6, steps, dtype=torch.float64)
    if final_beta_one:
        betas[-1] = 1.0
    return ctmc.DiscreteTimeChain(ctmc.Uniform(vocab), betas)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
@given(
    seed=st.integers(0, 10_000),
    vocab=st.integers(2, 40),
    scale=st.floats(0.1, 8.0),
    final_beta_one=st.booleans(),
)
def test_closed_forms_equal_the_generic_posterior_path(kind, seed, vocab, scale, final_beta_one):
    # Reference: DiscreteTimeChain.posterior twice (generic_kl_terms), float64; values and gradients to 1e-10.
    steps = 8
    chain = _closed_form_chain(kind, vocab, steps, final_beta_one)
    loss = losses.D3PMLoss.from_chain(chain, hybrid_weight=0.0)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, loss.num_clean_states, (4, 5), generator=g)
    i = torch.tensor([1, 2, steps // 2, steps])  # the edge steps: reconstruction, first KL, middle, last
    x_t = chain.sample(x0, i[:, None], generator=g)
    logits = (scale * torch.randn(4, 5, chain.num_states, dtype=torch.float64, generator=g)).requires_grad_(True)
    closed = loss.kl_terms(logits, x0, x_t, i)
    generic = loss.generic_kl_terms(logits, x0, x_t, i)
    torch.testing.assert_close(closed, generic, rtol=1e-10, atol=1e-10)
    (grad_closed,) = torch.autograd.grad(closed.sum(), logits)
    (grad_generic,) = torch.autograd.grad(generic.sum(), logits)
    torch.testing.assert_close(grad_closed, grad_generic, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ["absorbing", "uniform"])
def test_loss_gradient_matches_finite_differences(kind):
    # Reference: torch.autograd.gradcheck (central finite differences, float64) through the custom backward.
    chain = _chain(kind, 3, 6)
    loss = losses.D3PMLoss.from_chain(chain, hybrid_weight=0.1)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, loss.num_clean_states, (4, 3), generator=g)
    i = torch.tensor([1, 2, 3, 6])
    x_t = chain.sample(x0, i[:, None], generator=g)
    logits = torch.randn(4, 3, chain.num_states, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda out: loss(out, x0, x_t, i / 6), (logits,))


@given(first=st.floats(1e-4, 0.5), last=st.floats(1e-4, 1.0), vocab=st.integers(2, 30))
def test_uniform_prior_term_matches_the_dense_table(first, last, vocab):
    # Reference: KL(q(x_T | x0 = a) || uniform) from the dense rows of Q-bar_T (cumulative_matrix), float64.
    chain = ctmc.DiscreteTimeChain(ctmc.Uniform(vocab), torch.linspace(first, last, 5, dtype=torch.float64))
    rows = chain.cumulative_matrix(5)
    expected = torch.xlogy(rows, rows * vocab).sum(-1)
    prior = losses.D3PMLoss.from_chain(chain).prior_terms(torch.arange(vocab)[None])[0]
    torch.testing.assert_close(prior, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("eps", [1e-3, 0.05])
def test_absorbing_loglinear_prior_term_is_finite_and_matches_expm(eps):
    # The absorbing chain with LogLinear(eps) keeps a fraction eps of the tokens clean at t = 1, which the all-mask
    # limit law misses (an infinite KL); the prior is the forward marginal of a uniform clean token instead.
    # Reference: KL of the rows of scipy.linalg.expm(total(1) Q) against u expm(total(1) Q) written out, and the
    # closed form eps log V per token (losses/prior.py).
    vocab = 4
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear(eps))
    loss = losses.D3PMLoss(process, num_steps=8)
    end = -np.log(eps)  # total(1)
    rows = scipy.linalg.expm(end * process.rate_matrix.matrix().numpy())[:vocab]
    prior = np.full(vocab, 1.0 / vocab) @ rows
    expected = np.array([np.sum(r[r > 0] * np.log(r[r > 0] / prior[r > 0])) for r in rows])
    x0 = torch.arange(vocab)[None]
    terms = loss.prior_terms(x0)[0]
    np.testing.assert_allclose(terms.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(terms.numpy(), eps * np.log(vocab), rtol=1e-9)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, vocab, (6, 5), generator=g)
    t = loss.sample_time(6, generator=g)
    x_t = process.sample(x0, t[:, None], generator=g)
    value = loss(torch.randn(6, 5, vocab + 1, dtype=torch.float64, generator=g), x0, x_t, t)
    assert bool(torch.isfinite(value).all())
