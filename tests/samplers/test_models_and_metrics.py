"""The model wrappers (RADD factorisation against enumeration, caching, NFE), the unigram entropy against a
per-row numpy count, and the ordinal (birth-death) tau-leaping with correctors against enumeration."""

import itertools

import numpy as np
import pytest
import torch
from sampler_toy import ToyChain, total_variation, tv_noise_bound

import ctmc
import samplers


def absorbing_toy():
    return ToyChain(ctmc.ForwardProcess(ctmc.Absorbing(3), ctmc.LogLinear(1e-4)), 3, 3)


@pytest.mark.parametrize("total", [0.05, 0.7, 4.0])
def test_denoiser_score_matches_the_enumerated_score_at_masked_positions(total):
    """RADD: s(x)_y = p(x0_i = y | x) / expm1(sigma-bar) at masked positions (reference: p_t ratios)."""
    toy = absorbing_toy()
    x = toy.states
    totals = torch.full((x.shape[0],), total, dtype=torch.float64)
    exact = toy.score(x, totals)
    built = ctmc.denoiser_to_score(toy.denoiser(x).log(), x, totals)
    masked = x == 3
    torch.testing.assert_close(built[masked][:, :3], exact[masked][:, :3], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        ctmc.score_to_denoiser(exact, x, totals)[masked], toy.denoiser(x)[masked], rtol=1e-10, atol=1e-12
    )


def test_cache_skips_calls_when_nothing_changed_and_keeps_the_samples():
    """With a time-independent denoiser, caching must not change the samples (same generator). The whole-batch
    cache's number of calls must equal 1 + the number of steps whose input differs from the previous one, and the
    per-row cache's NFE (row-evaluations / B) 1 + the number of rows that differ from the previous step's / B,
    both counted on an uncached run that records every input."""
    toy = absorbing_toy()
    seen = []

    def recording(x):
        seen.append(x.clone())
        return toy.denoiser(x)

    uncached = samplers.EulerSampler(toy.process, steps=64, eps=1e-3, cache=False).generate(
        samplers.Denoiser(recording), 4, 3, generator=torch.Generator().manual_seed(0)
    )
    changes = 1 + sum(not torch.equal(a, b) for a, b in itertools.pairwise(seen))
    row_changes = 4 + sum(int((a != b).any(1).sum()) for a, b in itertools.pairwise(seen))
    assert uncached.nfe == len(seen) == 65
    for cache, nfe in [("batch", changes), ("row", row_changes / 4)]:
        cached = samplers.EulerSampler(toy.process, steps=64, eps=1e-3, cache=cache).generate(
            samplers.Denoiser(toy.denoiser), 4, 3, generator=torch.Generator().manual_seed(0)
        )
        assert cached.nfe == nfe < 65
        assert cached.calls == changes
        assert torch.equal(uncached.tokens, cached.tokens)
    assert row_changes / 4 < changes


def test_log_outputs_and_wrong_model_kind():
    toy = absorbing_toy()
    sampler = samplers.TweedieSampler(toy.process, steps=4, eps=1e-3)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = sampler.sample(samplers.Denoiser(toy.denoiser), 8, 3, generator=gen())
    logged = sampler.sample(samplers.Denoiser(lambda x: toy.denoiser(x).log(), log=True), 8, 3, generator=gen())
    assert torch.equal(plain, logged)
    uniform = ctmc.ForwardProcess(ctmc.Uniform(3), ctmc.LogLinear())
    with pytest.raises(TypeError, match="absorbing"):
        samplers.EulerSampler(uniform, steps=2).sample(samplers.Denoiser(toy.denoiser), 2, 3)
    with pytest.raises(TypeError, match="absorbing"):
        samplers.FirstHittingSampler(uniform)


def test_unigram_entropy_matches_numpy_counts():
    tokens = torch.randint(0, 7, (13, 29), generator=torch.Generator().manual_seed(0))
    expected = []
    for row in tokens.numpy():
        _, counts = np.unique(row, return_counts=True)
        f = counts / counts.sum()
        expected.append(-(f * np.log(f)).sum())
    assert samplers.unigram_entropy(tokens) == pytest.approx(float(np.mean(expected)), rel=1e-12)
    assert samplers.unigram_entropy(torch.zeros(5, dtype=torch.long)) == 0.0


@pytest.mark.parametrize("corrector_steps", [0, 1])
def test_ordinal_tau_leaping_on_birth_death_is_exact_at_fine_steps(corrector_steps):
    """BirthDeath(4) chain, length 2, summed Poisson jumps with clipping (and predictor-corrector): TV to p0
    within the sampling-noise bound plus a 0.01 first-order bias allowance at 128 steps; 2 steps is worse."""
    process = ctmc.ForwardProcess(ctmc.BirthDeath(4, 1.0), ctmc.Geometric(1e-3, 15.0))
    toy = ToyChain(process, 4, 2, seed=1)
    n = 20_000
    model = samplers.ConcreteScore(toy.score)
    tvs = {}
    for steps in (2, 128):
        sampler = samplers.TauLeapingSampler(process, steps=steps, eps=1e-3, corrector_steps=corrector_steps)
        assert sampler.ordinal
        out = sampler.sample(model, n, 2, generator=torch.Generator().manual_seed(0))
        tvs[steps] = total_variation(toy.histogram(out), toy.p0)
    bound = tv_noise_bound(toy.p0, n)
    assert tvs[128] <= bound + 0.01, tvs
    assert tvs[2] > tvs[128] + bound, tvs
