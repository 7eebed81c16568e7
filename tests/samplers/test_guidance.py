"""Guided sampling (samplers/guidance.py) against the class-conditional toy chain (tests/samplers/guidance_toy.py,
enumeration in float64): every sampler, on every chain it applies to, draws

- the exact conditional law p0(. | c) with classifier-free guidance at gamma = 1,
- the exact unconditional law at gamma = 0 (one chain per sampler, rotating),
- the exact conditional law with predictor guidance and the exact classifier (Bayes' rule) at gamma = 1 (every
  sampler on the denoiser, two on the uniform chain),

within the noise bound of the sampler contract (Jensen + McDiarmid, `tv_noise_bound`) plus the sampler's
discretisation allowance at the stated steps (`SAMPLERS`; the first-hitting sampler is exact: 0). The guided model's
output is compared with the rate forms computed separately from the enumerated scores and denoisers, the
first-order predictor form with the exact one, and the caching and packed paths with the plain ones (same tokens).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from guidance_toy import ClassToy
from sampler_contract import EPS, LENGTH
from sampler_toy import total_variation, tv_noise_bound

import samplers

NUM_SAMPLES = 5_000
LABEL = 1
# (sampler, steps, TV allowance at those steps). Measured at 20,000 samples (noise about 0.012), class 1 at
# gamma = 1: first-order samplers at 32 steps <= 0.018 (absorbing) and <= 0.033 (uniform, Euler); trapezoidal at 16
# steps <= 0.011; RK-2 at 32 steps <= 0.054 on the uniform chain, hence 64 steps for it (<= 0.015, the contract's).
SAMPLERS = {
    "euler": (samplers.EulerSampler, 32, 0.03),
    "tau-leaping": (samplers.TauLeapingSampler, 32, 0.03),
    "tweedie": (samplers.TweedieSampler, 32, 0.03),
    "trapezoidal": (samplers.TrapezoidalSampler, 16, 0.02),
    "rk2": (samplers.RK2Sampler, 64, 0.02),
    "first-hitting": (samplers.FirstHittingSampler, None, 0.0),
    "remdm": (samplers.ReMDMSampler, 32, 0.03),
}
ABSORBING_ONLY = ("first-hitting", "remdm")
CHAINS = ("absorbing", "absorbing-denoiser", "uniform")
CASES = [(name, chain) for name in SAMPLERS for chain in CHAINS if chain != "uniform" or name not in ABSORBING_ONLY]
# gamma = 0 once per sampler, on a chain that rotates over the samplers.
UNCONDITIONAL_CASES = [(name, [c for n, c in CASES if n == name][i % 2]) for i, name in enumerate(SAMPLERS)]
# Predictor guidance: every sampler on the denoiser (whose rows the wrapper turns into the chain's concrete score),
# and the uniform chain's full outputs with two samplers. A guided score is a concrete score like any other: that it
# equals the conditional score on every chain is checked without sampling below.
PREDICTOR_CASES = [(name, "absorbing-denoiser") for name in SAMPLERS] + [("euler", "uniform"), ("tweedie", "uniform")]


def conditional_model(toy: ClassToy, chain: str, positions: bool = True) -> samplers.ConcreteScore | samplers.Denoiser:
    """The toy's class-conditional network (keyword label=) as the samplers' model kind for the chain."""
    if chain.endswith("denoiser"):
        return samplers.Denoiser(toy.denoiser, log=True, positions=positions)
    return samplers.ConcreteScore(toy.score, log=True, positions=positions)


def unconditional_model(
    toy: ClassToy, chain: str, positions: bool = True
) -> samplers.ConcreteScore | samplers.Denoiser:
    """The same network at the null label: the exact unconditional score or denoiser."""
    null = torch.tensor(toy.num_classes)
    if chain.endswith("denoiser"):
        return samplers.Denoiser(
            lambda x, where=None: toy.denoiser(x, null.expand(x.shape[0]), where), log=True, positions=positions
        )
    return samplers.ConcreteScore(
        lambda x, total, where=None: toy.score(x, total, null.expand(x.shape[0]), where), log=True, positions=positions
    )


def sampled_tv(toy: ClassToy, name: str, model, label: int, seed: int = 0) -> tuple[float, float]:
    """(TV between the histogram of NUM_SAMPLES guided samples and p0(. | label), its noise bound + allowance)."""
    cls, steps, bias = SAMPLERS[name]
    out = cls(toy.process, steps=steps, eps=EPS).sample(
        model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(seed)
    )
    law = toy.law(label)
    return total_variation(toy.mixture.histogram(out), law), tv_noise_bound(law, NUM_SAMPLES) + bias


def test_the_class_laws_are_far_apart():
    """The sampling tests can fail: a sampler that drew another class's law, or the unconditional one, would be
    off by far more than any allowance."""
    toy = ClassToy("absorbing")
    allowance = tv_noise_bound(toy.law(LABEL), NUM_SAMPLES) + max(bias for _, _, bias in SAMPLERS.values())
    assert total_variation(toy.law(LABEL), toy.law(toy.num_classes)) > 5 * allowance
    assert total_variation(toy.law(LABEL), toy.law(0)) > 5 * allowance


@pytest.mark.parametrize(("name", "chain"), CASES)
def test_classifier_free_gamma_one_draws_the_conditional_law(name, chain):
    toy = ClassToy(chain)
    model = samplers.classifier_free_guidance(conditional_model(toy, chain), LABEL, toy.num_classes, gamma=1.0)
    tv, allowed = sampled_tv(toy, name, model, LABEL)
    assert tv <= allowed, (name, chain, tv, allowed)


@pytest.mark.parametrize(("name", "chain"), UNCONDITIONAL_CASES)
def test_classifier_free_gamma_zero_draws_the_unconditional_law(name, chain):
    toy = ClassToy(chain)
    model = samplers.classifier_free_guidance(conditional_model(toy, chain), LABEL, toy.num_classes, gamma=0.0)
    tv, allowed = sampled_tv(toy, name, model, toy.num_classes, seed=1)
    assert tv <= allowed, (name, chain, tv, allowed)


@pytest.mark.parametrize(("name", "chain"), PREDICTOR_CASES)
def test_predictor_guidance_with_the_exact_classifier_draws_the_conditional_law(name, chain):
    toy = ClassToy(chain)
    model = samplers.predictor_guidance(
        unconditional_model(toy, chain), toy.classifier, LABEL, gamma=1.0, method="exact", chunk_size=1 << 16
    )
    tv, allowed = sampled_tv(toy, name, model, LABEL, seed=2)
    assert tv <= allowed, (name, chain, tv, allowed)


def noisy_states(toy: ClassToy, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, L) drawn uniformly over all states, total (B,) sigma-bar at uniform times in [0.05, 0.95])."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, toy.process.num_states, (batch, LENGTH), generator=generator)
    t = 0.05 + 0.9 * torch.rand(batch, dtype=torch.float64, generator=generator)
    return x, toy.process.total(t)


@pytest.mark.parametrize("chain", CHAINS)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("positions", [True, False])
def test_classifier_free_output_is_the_rate_form(chain, gamma, positions):
    """gamma != 1: the wrapper's log-values equal gamma log s_c + (1 - gamma) log s_u from the enumerated class and
    mixture scores (a denoiser: the log-softmax of that combination of log p_c and log p_u), full and packed."""
    toy = ClassToy(chain)
    x, total = noisy_states(toy, 16, seed=3)
    guided = samplers.classifier_free_guidance(conditional_model(toy, chain, positions), LABEL, 2, gamma)
    where = torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) < 0.5
    if chain.endswith("denoiser"):
        # Masked rows: every clean token possible. A clean row is the one-hot of its token in both models (log 0
        # elsewhere), and stays so.
        log_c, log_u = toy.classes[LABEL].denoiser(x).log(), toy.mixture.denoiser(x).log()
        expected = torch.log_softmax(gamma * log_c + (1 - gamma) * log_u, dim=-1)
        clean = x < toy.process.rate_matrix.mask_index
        expected[clean] = F.one_hot(x[clean], log_c.shape[-1]).double().log()
        assert bool(clean.any() & (~clean).any())
    else:
        log_c, log_u = toy.classes[LABEL].score(x, total).log(), toy.mixture.score(x, total).log()
        expected = gamma * log_c + (1 - gamma) * log_u
    full = guided(x, total)
    torch.testing.assert_close(full, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(guided(x, total, where), expected[where], rtol=0, atol=1e-12)


def test_guided_log_values_against_powers():
    """exp of the combination is a^gamma b^(1 - gamma) (torch.pow in float64); a zero stays zero for 0 < gamma, the
    term with coefficient 0 is left out (gamma = 1: a exactly even where b = 0)."""
    a = torch.tensor([0.3, 2.0, 0.0, 1.5, 0.7], dtype=torch.float64)
    b = torch.tensor([0.6, 0.1, 0.4, 0.0, 0.7], dtype=torch.float64)
    for gamma in (0.0, 0.3, 1.0, 2.5):
        out = samplers.guided_log_values(a.log(), b.log(), gamma).exp()
        expected = torch.pow(a, gamma) * torch.pow(b, 1 - gamma)
        if gamma not in (0.0, 1.0):
            expected = torch.where((a == 0) | (b == 0), 0.0, expected)
        torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)


def test_one_batched_call_of_two_b_rows_and_nfe_counts_both():
    """Each evaluation is one call of the network on 2B rows, the label then the null label; NFE counts the 2B rows
    (2 per sequence per step), `calls` the one call."""
    toy = ClassToy("absorbing")
    model = samplers.classifier_free_guidance(conditional_model(toy, "absorbing"), LABEL, 2, gamma=2.0)
    batch, steps = 6, 8
    result = samplers.EulerSampler(toy.process, steps=steps, eps=EPS).generate(model, batch, LENGTH)
    assert len(toy.calls) == result.calls == steps + 1
    expected = torch.tensor([LABEL] * batch + [2] * batch)
    assert all(size == 2 * batch and torch.equal(labels, expected) for size, labels in toy.calls)
    assert result.nfe == 2 * (steps + 1)


@pytest.mark.parametrize("cls", [samplers.EulerSampler, samplers.TrapezoidalSampler, samplers.ReMDMSampler])
def test_guided_denoiser_is_cached_with_the_same_samples(cls):
    """A guided denoiser is time-independent: the row and batch caches give the tokens of no cache, with fewer
    row-evaluations (each one of the 2B rows)."""
    toy = ClassToy("absorbing-denoiser")
    model = samplers.classifier_free_guidance(conditional_model(toy, "absorbing-denoiser"), LABEL, 2, gamma=2.0)
    results = {
        cache: cls(toy.process, steps=32, eps=EPS, cache=cache).generate(
            model, 64, LENGTH, generator=torch.Generator().manual_seed(5)
        )
        for cache in ("none", "batch", "row")
    }
    assert torch.equal(results["row"].tokens, results["none"].tokens)
    assert torch.equal(results["batch"].tokens, results["none"].tokens)
    assert results["none"].nfe == 2 * results["none"].calls
    assert results["row"].nfe < results["batch"].nfe <= results["none"].nfe


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("chain", ["absorbing", "absorbing-denoiser"])
def test_packed_network_calls_give_the_same_samples(name, chain):
    """The guided wrapper asks a network with `positions` for the packed rows of the 2B sequences and splits them;
    a network without it is called in full and selected: identical tokens (gamma = 2, and predictor guidance)."""
    toy = ClassToy(chain)
    cls, steps, _ = SAMPLERS[name]

    def draw(model) -> torch.Tensor:
        return cls(toy.process, steps=8 if steps else None, eps=EPS).sample(
            model, 128, LENGTH, generator=torch.Generator().manual_seed(6)
        )

    packed, full = (conditional_model(toy, chain, positions) for positions in (True, False))
    free = [samplers.classifier_free_guidance(m, LABEL, 2, gamma=2.0) for m in (packed, full)]
    assert torch.equal(draw(free[0]), draw(free[1]))
    guided = [
        samplers.predictor_guidance(unconditional_model(toy, chain, positions), toy.classifier, LABEL, gamma=2.0)
        for positions in (True, False)
    ]
    assert torch.equal(draw(guided[0]), draw(guided[1]))


@pytest.mark.parametrize("chain", CHAINS)
def test_predictor_guidance_with_the_exact_classifier_is_the_conditional_score(chain):
    """gamma = 1 (Bayes' rule): log s(x)_y + log p(c | y) - log p(c | x) equals the enumerated log-score of class c,
    at every position of a uniform chain and at the masked positions of the absorbing chain (a denoiser's rows turned
    into scores by the RADD factorisation)."""
    toy = ClassToy(chain)
    x, total = noisy_states(toy, 32, seed=7)
    guided = samplers.predictor_guidance(unconditional_model(toy, chain), toy.classifier, LABEL, method="exact")
    expected = toy.classes[LABEL].score(x, total).log()
    rows = x == toy.process.rate_matrix.mask_index if chain.endswith("denoiser") else torch.ones_like(x).bool()
    torch.testing.assert_close(guided(x, total, rows), expected[rows], rtol=0, atol=1e-10)


def test_predictor_guidance_matches_a_brute_force_loop():
    """gamma = 2 on the uniform chain: every entry against a Python loop over positions and states that builds each
    neighbour and calls the classifier on it alone."""
    toy = ClassToy("uniform")
    x, total = noisy_states(toy, 3, seed=8)
    gamma, n = 2.0, toy.process.num_states
    guided = samplers.predictor_guidance(unconditional_model(toy, "uniform"), toy.classifier, LABEL, gamma=gamma)
    base = toy.mixture.score(x, total).log()
    expected = torch.empty_like(base)
    for b in range(x.shape[0]):
        center = float(toy.classifier(x[b : b + 1], total[b : b + 1])[0, LABEL])
        for i in range(LENGTH):
            for y in range(n):
                neighbour = x[b : b + 1].clone()
                neighbour[0, i] = y
                ratio = float(toy.classifier(neighbour, total[b : b + 1])[0, LABEL]) - center
                expected[b, i, y] = base[b, i, y] + gamma * (0.0 if y == int(x[b, i]) else ratio)
    torch.testing.assert_close(guided(x, total), expected, rtol=0, atol=1e-12)


def pairwise_classifier(scale: float, num_states: int, num_classes: int = 3):
    """log_softmax of logits_c = scale sum_{i != j} o_i^T W_c o_j over one-hot rows o (tokens or float weights):
    the logits are affine in each single position's one-hot, so the first-order error comes from the log-softmax
    alone and is O(scale^2) while the log-ratios are O(scale). With log_softmax=False it returns the logits."""
    weights = torch.randn(num_classes, num_states, num_states, generator=torch.Generator().manual_seed(9)).double()

    def classify(x: torch.Tensor, total: torch.Tensor, log_softmax: bool = True) -> torch.Tensor:
        onehot = x.double() if x.is_floating_point() else F.one_hot(x, num_states).double()
        pairs = torch.einsum("bin,cnm,bjm->bcij", onehot, weights, onehot)
        logits = scale * (pairs.sum((-1, -2)) - pairs.diagonal(dim1=-2, dim2=-1).sum(-1))
        return torch.log_softmax(logits, -1) if log_softmax else logits

    return classify


def test_first_order_is_exact_for_an_affine_classifier_and_second_order_otherwise():
    toy = ClassToy("uniform")
    x, total = noisy_states(toy, 16, seed=10)
    model = unconditional_model(toy, "uniform")
    n = toy.process.num_states

    def difference(classify) -> tuple[float, float]:
        exact, approx = (
            samplers.predictor_guidance(model, classify, LABEL, method=method)(x, total)
            for method in ("exact", "first-order")
        )
        base = toy.mixture.score(x, total).log()
        return float((exact - approx).abs().max()), float((exact - base).abs().max())

    affine = pairwise_classifier(1.0, n)
    error, size = difference(lambda x, total: affine(x, total, log_softmax=False))
    assert error < 1e-12 < size
    errors = [difference(pairwise_classifier(scale, n)) for scale in (0.02, 0.01)]
    assert 3.5 < errors[0][0] / errors[1][0] < 4.5  # error O(scale^2)
    assert 1.8 < errors[0][1] / errors[1][1] < 2.2  # the ratio itself O(scale)


def test_auto_is_exact_for_few_neighbours_and_first_order_otherwise():
    """classifier_rows: B + N n for the exact form (N positions asked, n states), B for the first-order form; auto
    switches at length x states = EXACT_NEIGHBOURS."""
    n = 4
    classify = pairwise_classifier(0.1, n, num_classes=2)
    score = samplers.ConcreteScore(lambda x, total: torch.zeros(*x.shape, n, dtype=torch.float64), log=True)
    limit = samplers.guidance.EXACT_NEIGHBOURS // n
    for length, method in [(limit, "exact"), (limit + 1, "first-order")]:
        x = torch.randint(0, n, (2, length), generator=torch.Generator().manual_seed(11))
        guided = samplers.predictor_guidance(score, classify, 1)
        where = torch.zeros_like(x, dtype=torch.bool)
        where[:, :3] = True
        assert guided(x, torch.ones(2, dtype=torch.float64), where).shape == (6, n)
        assert guided.fn.classifier_rows == (2 + 6 * n if method == "exact" else 2), (length, method)


def test_first_order_guidance_with_the_classifier_network_leaves_no_gradients():
    """The gradient through the one-hot input is taken with autograd.grad inside the samplers' no_grad loop: one
    classifier row per sequence per call, and no .grad left on the classifier's parameters."""
    import models

    toy = ClassToy("absorbing")
    classifier = models.NoisyClassifier(
        toy.process.num_states, 2, hidden_size=32, num_layers=1, num_heads=2, cond_dim=16
    )
    for parameter in classifier.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    guided = samplers.predictor_guidance(unconditional_model(toy, "absorbing"), classifier, LABEL, method="first-order")
    result = samplers.EulerSampler(toy.process, steps=4, eps=EPS).generate(guided, 8, LENGTH)
    assert result.tokens.shape == (8, LENGTH) and int(result.tokens.max()) < toy.process.num_states - 1
    assert guided.fn.classifier_rows == 8 * result.calls and result.nfe == result.calls
    assert all(parameter.grad is None for parameter in classifier.parameters())


def test_bad_input_raises_one_line_errors():
    toy = ClassToy("absorbing")
    model = conditional_model(toy, "absorbing")
    cases = [
        (dict(label=LABEL, null_label=2, gamma=-1.0), "gamma must be a finite number >= 0"),
        (dict(label=LABEL, null_label=2, gamma=math.inf), "gamma must be a finite number >= 0"),
        (dict(label=2, null_label=2, gamma=1.0), r"label must be a class in \[0, 2\)"),
        (dict(label=LABEL, null_label=0, gamma=1.0), "null_label must be an int >= 1"),
        (dict(label=-1, null_label=2, gamma=1.0), "label must be an int >= 0"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            samplers.classifier_free_guidance(model, **arguments)
    plain = unconditional_model(toy, "absorbing")
    with pytest.raises(ValueError, match="method must be one of"):
        samplers.predictor_guidance(plain, toy.classifier, LABEL, method="taylor")
    with pytest.raises(TypeError, match="classifier must be callable"):
        samplers.predictor_guidance(plain, None, LABEL)
    x, total = noisy_states(toy, 2, seed=12)
    with pytest.raises(ValueError, match=r"label must be a class in \[0, 2\) of the classifier"):
        samplers.predictor_guidance(plain, toy.classifier, 5)(x, total)
    with pytest.raises(ValueError, match="the classifier must return"):
        samplers.predictor_guidance(plain, lambda x, total: torch.zeros(x.shape[0]), LABEL)(x, total)
