"""The contract every chain's tests inherit (no per-class branches): `class TestMyChain(RateMatrixContract)` with
`make_chain()` (a small instance, n <= 5) and `schedule`, nothing else.

References, all float64: scipy.linalg.expm for P(t) = exp(tQ) and the Kolmogorov equations; `ctmc.Dense` on the
chain's own matrix for every structured override (Dense uses the dense defaults of `ctmc.RateMatrix`); the
null space of Q^T for the limit law; enumeration of all sequences (`ctmc.enumeration.ToyChain`) for the
samplers (TV distance to p_0) and for the score-entropy ELBO identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import ctmc
import samplers
from ctmc.enumeration import ToyChain, total_variation, tv_noise_bound

TIMES = (0.0, 1e-6, 0.3, 1.7, 6.0)
NUM_SAMPLES = 5_000
SAMPLER_LENGTH = 3
FINE_STEPS = 32
SAMPLER_EPS = 1e-3
ELBO_LENGTH = 2
ELBO_NODES = 96


def _random_score(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2.0


class RateMatrixContract:
    schedule: ctmc.NoiseSchedule = ctmc.Geometric(1e-3, 12.0)
    # TV allowed above the noise bound at FINE_STEPS. Measured (5,000 samples, 32 steps, seeds 0 and 1, Euler,
    # Tweedie and tau-leaping on the five chains of tests/ctmc): TV - bound <= -0.024, so none is needed.
    sampler_bias: float = 0.0

    def make_chain(self) -> ctmc.RateMatrix:
        raise NotImplementedError

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _pair(self) -> tuple[ctmc.RateMatrix, ctmc.Dense]:
        chain = self.make_chain()
        return chain, ctmc.Dense(chain.matrix())

    def _states(self, chain: ctmc.RateMatrix, shape=(4, 6), seed: int = 0) -> torch.Tensor:
        return torch.randint(0, chain.num_states, shape, generator=torch.Generator().manual_seed(seed))

    def _reachable_pair(self, chain: ctmc.RateMatrix, shape=(4, 6), seed: int = 0):
        """Clean x0 (B, L), x_t ~ P(total)[x0, :] and total (B,) float64."""
        g = torch.Generator().manual_seed(seed)
        x0 = torch.randint(0, chain.num_clean_states, shape, generator=g)
        total = torch.tensor([0.05, 0.4, 1.3, 3.0], dtype=torch.float64)[: shape[0]]
        x_t = chain.sample(x0, total[:, None], generator=g)
        return x0, x_t, total

    # ---- the generator and the Kolmogorov identities -----------------------------------------------------
    def test_generator_is_valid_and_structure_is_consistent(self):
        chain = self.make_chain()
        q = ctmc.validate_generator(chain.matrix())
        assert q.shape == (chain.num_states, chain.num_states)
        assert 1 <= chain.num_clean_states <= chain.num_states
        if chain.exchangeable and chain.num_clean_states >= 2:  # swapping two clean states leaves Q unchanged
            order = torch.arange(chain.num_states)
            order[[0, 1]] = order[[1, 0]]
            assert torch.equal(q[order][:, order], q)
        if chain.mask_index is not None:  # the mask is the last state, absorbing, and not a clean value
            assert chain.mask_index == chain.num_states - 1 == chain.num_clean_states
            assert bool((q[chain.mask_index] == 0).all())

    @pytest.mark.parametrize("t", TIMES)
    def test_transition_matches_expm_and_kolmogorov_equations(self, t):
        chain = self.make_chain()
        q = chain.matrix().numpy()
        expected = scipy.linalg.expm(t * q)
        tt = torch.tensor(t, dtype=torch.float64)
        np.testing.assert_allclose(chain.transition(tt).numpy(), expected, rtol=1e-9, atol=1e-12)
        states = torch.arange(chain.num_states)
        times = tt.expand(chain.num_states)
        np.testing.assert_allclose(chain.transition_from(states, times).numpy(), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(chain.transition_to(states, times).numpy(), expected.T, rtol=1e-9, atol=1e-12)
        p = torch.softmax(torch.randn(3, chain.num_states, dtype=torch.float64), -1)
        np.testing.assert_allclose(chain.propagate(p, tt).numpy(), p.numpy() @ expected, rtol=1e-9, atol=1e-12)
        # Forward and backward equations P' = P Q = Q P, by a central difference of step min(1e-5, t / 2).
        h = min(1e-5, t / 2)
        if t > 0:
            derivative = (scipy.linalg.expm((t + h) * q) - scipy.linalg.expm((t - h) * q)) / (2 * h)
            np.testing.assert_allclose(derivative, expected @ q, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(expected @ q, q @ expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(chain.outgoing_rates(states).numpy(), q, atol=1e-15)
        np.testing.assert_allclose(chain.incoming_rates(states).numpy(), q.T, atol=1e-15)
        np.testing.assert_allclose(chain.exit_rate(states).numpy(), -np.diag(q), atol=1e-15)

    def test_sample_follows_the_transition_row(self):
        chain = self.make_chain()
        x = torch.arange(chain.num_states).repeat_interleave(20_000)
        drawn = chain.sample(x, torch.tensor(0.7, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
        rows = chain.transition(torch.tensor(0.7, dtype=torch.float64))
        for state in range(chain.num_states):
            hist = torch.bincount(drawn[x == state], minlength=chain.num_states).double() / 20_000
            assert total_variation(hist, rows[state]) <= tv_noise_bound(rows[state], 20_000)

    # ---- every structured override against the dense default ------------------------------------------------
    def test_overrides_match_the_dense_defaults(self):
        chain, dense = self._pair()
        x = self._states(chain)
        x0, x_t, total = self._reachable_pair(chain)
        t = torch.rand(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
        for method in ("transition_from", "transition_to"):
            ours, theirs = getattr(chain, method)(x, t), getattr(dense, method)(x, t)
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(chain.exit_rate(x), dense.exit_rate(x))
        torch.testing.assert_close(chain.limit_law(), dense.limit_law(), rtol=1e-8, atol=1e-10)
        every = torch.arange(chain.num_states)
        a, b = every.repeat_interleave(chain.num_states), every.repeat(chain.num_states)
        assert torch.equal(chain.reachable(a, b), dense.reachable(a, b))
        clean = torch.arange(chain.num_clean_states)
        for when in (0.3, 40.0):
            torch.testing.assert_close(chain.prior_kl(clean, when), dense.prior_kl(clean, when), rtol=1e-8, atol=1e-10)
        # Reverse rates and the analytic step, with a full-width score and with a clean-width one (times scale).
        score = _random_score((*x.shape, chain.num_states), 2)
        scale = torch.tensor([[0.5], [1.0], [2.0], [3.0]], dtype=torch.float64)
        delta = torch.tensor([[0.01], [0.2], [1.0], [2.5]], dtype=torch.float64)
        clean_score = score[..., : chain.num_clean_states]
        padded = torch.nn.functional.pad(clean_score, (0, chain.num_states - chain.num_clean_states))
        for given, reference, factor in ((score, score, None), (clean_score, padded, scale)):
            torch.testing.assert_close(
                chain.reverse_exit_rate(x, given, factor), dense.reverse_exit_rate(x, reference, factor)
            )
            torch.testing.assert_close(
                chain.reverse_rates_to(x, given, factor), dense.reverse_rates_to(x, reference, factor)
            )
            torch.testing.assert_close(
                chain.analytic_jump_probability(x, given, delta, factor),
                dense.analytic_jump_probability(x, reference, delta, factor),
                rtol=1e-7,
                atol=1e-9,
            )
            ours = chain.analytic_destinations(x, given, delta, factor)
            theirs = dense.analytic_destinations(x, reference, delta, factor)
            norm = lambda w: w / w.sum(-1, keepdim=True).clamp_min(1e-300)  # noqa: E731 (only the law matters)
            torch.testing.assert_close(norm(ours), norm(theirs), rtol=1e-7, atol=1e-9)
        # The concrete score of an x0-prediction, both readings, with a full-width and a clean-width p (some rows
        # without mass at x's reachable x0, one without any mass).
        probs = torch.softmax(torch.randn(*x.shape, chain.num_states, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(4)) * 2, -1)
        probs[0, 0] = 0.0
        probs[1, :, 0] = 0.0
        clean_probs = probs[..., : chain.num_clean_states] / probs[..., : chain.num_clean_states].sum(-1, keepdim=True)
        clean_probs[0, 0] = 0.0
        padded = torch.nn.functional.pad(clean_probs, (0, chain.num_states - chain.num_clean_states))
        when = torch.tensor([[0.02], [0.3], [1.5], [4.0]], dtype=torch.float64)
        for given, reference in ((probs, probs), (clean_probs, padded)):
            for method in ("score_from_posterior", "marginal_score"):
                ours = getattr(chain, method)(x, given, when)
                theirs = getattr(dense, method)(x, reference, when)
                torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
                assert bool((ours.gather(-1, x[..., None]) == 1).all())  # s(x)_x = 1
        # Score entropy and D3PM terms, values and gradients.
        log_score = (torch.randn(*x0.shape, chain.num_states, dtype=torch.float64) * 2).requires_grad_(True)
        ours = chain.score_entropy(log_score, x0, x_t, total)
        theirs = dense.score_entropy(log_score, x0, x_t, total)
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
        grads = [torch.autograd.grad(v.sum(), log_score)[0] for v in (ours, theirs)]
        torch.testing.assert_close(*grads, rtol=1e-9, atol=1e-10)
        step, before = delta, torch.tensor([[0.0], [0.1], [0.8], [2.0]], dtype=torch.float64)
        x_i = chain.sample(x0, (step + before).expand_as(x0), generator=torch.Generator().manual_seed(3))
        for mine, reference in zip(chain.d3pm_terms(log_score, x0, x_i, step, before),
                                   dense.d3pm_terms(log_score, x0, x_i, step, before), strict=True):
            torch.testing.assert_close(mine, reference, rtol=1e-9, atol=1e-10)

    # ---- the concrete score of an x0-prediction, by enumeration and against D3PM's posterior -----------------------
    @pytest.mark.parametrize("total", [0.05, 0.7, 3.0])
    def test_x0_scores_of_the_exact_posterior_are_the_exact_score(self, total):
        """Every sequence of a toy chain (L = 2): with p the exact posterior marginal p(x0_i | x_t) (enumeration),
        score_from_posterior is the exact score at every y that can reach x_i (the entries a sampler reads); with
        D3PM's p~ proportional to p(x0) / P[x0, x_i] (expm), marginal_score is the same score."""
        chain = self.make_chain()
        process = ctmc.ForwardProcess(chain, self.schedule)
        toy = ToyChain(process, chain.num_clean_states, ELBO_LENGTH)
        x = toy.states
        totals = torch.full((x.shape[0],), total, dtype=torch.float64)
        exact = toy.score(x, totals)
        posterior = toy.posterior(x, totals)
        y = torch.arange(chain.num_states).expand(*x.shape, -1)
        read = chain.reachable(y, x[..., None].expand_as(y))
        ours = chain.score_from_posterior(x, posterior, totals[:, None])
        torch.testing.assert_close(ours[read], exact[read], rtol=1e-9, atol=1e-12)
        column = torch.from_numpy(scipy.linalg.expm(total * chain.matrix().numpy()))[: chain.num_clean_states][:, x]
        column = column.permute(1, 2, 0)  # (S, L, clean): P[x0, x_i]
        weights = torch.where(column > 0, posterior / torch.where(column > 0, column, 1.0), 0.0)
        d3pm = weights / weights.sum(-1, keepdim=True)
        torch.testing.assert_close(chain.marginal_score(x, d3pm, totals[:, None])[read], exact[read],
                                   rtol=1e-9, atol=1e-12)

    def test_analytic_step_with_x0_scores_is_the_discrete_posterior(self):
        """The analytic step over [before, before + step] from an x0-prediction p, written out with scipy.linalg.expm:
        with marginal_score(p) it draws x_s from D3PM's model posterior, proportional to P(step)[y, x_t]
        (p P(before))_y (Austin et al. 2021, eq. 4); with score_from_posterior(p) from the posterior mean
        sum_{x0} p(x0) q(x_s = y | x_t, x0) over the x0 that reach x_t (p renormalised over them; MDLM's step)."""
        chain = self.make_chain()
        x = self._states(chain)
        probs = torch.softmax(torch.randn(*x.shape, chain.num_clean_states, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(5)) * 2, -1)
        step = torch.tensor([[0.01], [0.2], [1.0], [2.5]], dtype=torch.float64)
        before = torch.tensor([[0.05], [0.1], [0.8], [2.0]], dtype=torch.float64)
        q = chain.matrix().numpy()
        padded = torch.nn.functional.pad(probs, (0, chain.num_states - chain.num_clean_states)).numpy()
        d3pm, mean = np.zeros((*x.shape, chain.num_states)), np.zeros((*x.shape, chain.num_states))
        for b in range(x.shape[0]):
            forward = scipy.linalg.expm(float(step[b]) * q)
            earlier = scipy.linalg.expm(float(before[b]) * q)
            likelihood = forward[:, x[b].numpy()].T  # (L, n): P(step)[y, x_t]
            joint = likelihood * (padded[b] @ earlier)
            d3pm[b] = joint / joint.sum(-1, keepdims=True)
            given_x0 = likelihood[:, None, :] * earlier[None, :, :]  # (L, x0, y)
            norm = given_x0.sum(-1, keepdims=True)  # P(step + before)[x0, x_t]: 0 where x0 cannot reach x_t
            given_x0 = np.divide(given_x0, norm, out=np.zeros_like(given_x0), where=norm > 0)
            weights = padded[b] * (norm[..., 0] > 0)
            mean[b] = np.einsum("lk,lky->ly", weights / weights.sum(-1, keepdims=True), given_x0)
        for method, expected in (("marginal_score", d3pm), ("score_from_posterior", mean)):
            score = getattr(chain, method)(x, probs, step + before)
            jump = chain.analytic_jump_probability(x, score, step)
            weights = chain.analytic_destinations(x, score, step)
            law = jump[..., None] * weights / weights.sum(-1, keepdim=True).clamp_min(1e-300)
            law = law.scatter(-1, x[..., None], (1 - jump)[..., None])
            np.testing.assert_allclose(law.numpy(), expected, rtol=1e-8, atol=1e-11, err_msg=method)

    # ---- the limit law and the prior ------------------------------------------------------------------------
    def test_limit_law_is_stationary_and_the_limit_of_every_row(self):
        chain = self.make_chain()
        law = chain.limit_law()
        assert abs(float(law.sum()) - 1.0) < 1e-12 and bool((law >= 0).all())
        torch.testing.assert_close(law @ chain.matrix(), torch.zeros_like(law), rtol=0, atol=1e-12)
        far = scipy.linalg.expm(200.0 * chain.matrix().numpy())
        np.testing.assert_allclose(far, np.broadcast_to(law.numpy(), far.shape), atol=1e-8)

    def test_prior_draws_follow_the_limit_law(self):
        chain = self.make_chain()
        process = ctmc.ForwardProcess(chain, self.schedule)
        drawn = samplers.EulerSampler(process, steps=1).prior(200, 100, torch.device("cpu"), torch.Generator())
        assert drawn.shape == (200, 100)
        hist = torch.bincount(drawn.flatten(), minlength=chain.num_states).double() / drawn.numel()
        assert total_variation(hist, chain.limit_law()) <= tv_noise_bound(chain.limit_law(), drawn.numel())

    def test_prior_kl_matches_expm_rows(self):
        chain = self.make_chain()
        law = chain.limit_law().numpy()
        rows = scipy.linalg.expm(2.0 * chain.matrix().numpy())[: chain.num_clean_states]
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(rows > 0, rows * (np.log(np.where(rows > 0, rows, 1)) - np.log(law)), 0).sum(-1)
        np.testing.assert_allclose(chain.prior_kl(torch.arange(chain.num_clean_states), 2.0).numpy(), expected,
                                   rtol=1e-8, atol=1e-10)

    # ---- samplers, exact on a toy chain by enumeration ----------------------------------------------------------
    @pytest.mark.parametrize(
        "sampler_class", [samplers.EulerSampler, samplers.TweedieSampler, samplers.TauLeapingSampler]
    )
    def test_samplers_are_exact_at_fine_steps(self, sampler_class):
        chain = self.make_chain()
        process = ctmc.ForwardProcess(chain, self.schedule)
        toy = ToyChain(process, chain.num_clean_states, SAMPLER_LENGTH)
        sampler = sampler_class(process, steps=FINE_STEPS, eps=SAMPLER_EPS)
        tokens = sampler.sample(samplers.ConcreteScore(toy.score), NUM_SAMPLES, SAMPLER_LENGTH,
                                generator=torch.Generator().manual_seed(0))
        assert int(tokens.max()) < chain.num_clean_states  # x_0 is clean data
        tv = total_variation(toy.histogram(tokens), toy.p0)
        assert tv <= tv_noise_bound(toy.p0, NUM_SAMPLES) + self.sampler_bias, tv

    # ---- the score-entropy ELBO identity, by enumeration ---------------------------------------------------------
    def test_score_entropy_with_the_exact_score_is_the_elbo_gap(self):
        """int_0^{sigma-bar(1)} E[sum_i l_i] d sigma-bar = -log p_0(x0) - KL(q(x_1 | x0) || p_1) for every x0, where
        l is `score_entropy` with the exact score and p_1 the exact joint law at t = 1 (Lou et al. 2024: the
        path-space KL of the forward and the exact reverse chain). Gauss-Legendre in log sigma-bar, 96 nodes."""
        chain = self.make_chain()
        process = ctmc.ForwardProcess(chain, self.schedule)
        toy = ToyChain(process, chain.num_clean_states, ELBO_LENGTH)
        clean, states = toy.clean, toy.states
        end = float(process.total(1.0))
        # Gauss-Legendre in v = log sigma-bar over [log 1e-6, log end] (the integrand varies on every scale
        # of sigma-bar near 0); the piece below 1e-6 is below 1e-5 as the integrand is bounded.
        nodes, weights = np.polynomial.legendre.leggauss(ELBO_NODES)
        low, high = np.log(1e-6), np.log(end)
        totals = np.exp(low + (nodes + 1) * (high - low) / 2)
        weights = weights * (high - low) / 2 * totals
        integral = np.zeros(clean.shape[0])
        a, b = torch.meshgrid(torch.arange(clean.shape[0]), torch.arange(states.shape[0]), indexing="ij")
        a, b = a.flatten(), b.flatten()
        for total, weight in zip(totals, weights, strict=True):
            total_t = torch.tensor(total, dtype=torch.float64)
            rows = chain.transition(total_t)
            q = rows[clean[:, None, :], states[None, :, :]].prod(-1)  # (C, S) q(x_t | x0)
            keep = q.flatten() > 0
            log_score = torch.log(toy.score(states, total_t.expand(states.shape[0])))
            terms = chain.score_entropy(log_score[b[keep]], clean[a[keep]], states[b[keep]],
                                        total_t.expand(int(keep.sum()))).sum(-1)
            expected = torch.zeros(q.numel(), dtype=torch.float64)
            expected[keep] = q.flatten()[keep] * terms
            integral += weight * expected.view(q.shape).sum(1).numpy()
        final = torch.tensor(end, dtype=torch.float64)
        q1 = chain.transition(final)[clean[:, None, :], states[None, :, :]].prod(-1)
        p1 = toy.marginal_of(states[None], final[None])[0]
        kl = torch.where(q1 > 0, q1 * (torch.log(torch.where(q1 > 0, q1, 1.0)) - torch.log(p1)), 0.0).sum(1)
        expected = -torch.log(toy.p0) - kl
        np.testing.assert_allclose(integral, expected.numpy(), rtol=2e-4, atol=2e-4)
