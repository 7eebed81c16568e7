"""The contract every sampler's tests inherit (no per-class branches): shapes, reproducibility, exactness with
an exact score, denoiser or x0-predictor on a toy chain, shrinking error with more steps, the step-by-step loop
(`iterate`) and its trajectory, conditioning, NFE, and bad input.

Reference: `sampler_toy.ToyChain` (enumeration of all sequences, float64). Tolerance: `tv_noise_bound`, the
(1 - 1e-4) bound on the TV distance between p_0 and an N-sample histogram of p_0 (Jensen + McDiarmid), plus
`bias`, the discretisation error allowed at `fine_steps` (0 for an exact sampler; otherwise an O(1/K) term
stated by the subclass).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from sampler_toy import ToyChain, total_variation, tv_noise_bound

import ctmc
import samplers

NUM_SAMPLES = 20_000
VOCAB = 3
LENGTH = 3
EPS = 1e-3


def exact_logits(toy: ToyChain):
    """The exact x0-predictor of the toy as logits over all n states: log p(x0_i | x_t), -inf at the mask."""

    def logits(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log(toy.posterior(x, total))
        return torch.nn.functional.pad(log_probs, (0, toy.n - toy.vocab), value=float("-inf"))

    return logits


def make_toy(chain: str) -> tuple[ToyChain, samplers.ConcreteScore | samplers.Denoiser | samplers.X0Predictor]:
    """'absorbing' (exact score), 'absorbing-denoiser' (exact RADD denoiser), 'absorbing-x0' (exact x0-predictor,
    logits over the n states), 'uniform' (exact score) or 'uniform-x0' (exact x0-predictor, probabilities)."""
    if chain.startswith("absorbing"):
        process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(1e-4))
    else:
        process = ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.Geometric(1e-3, 12.0))
    toy = ToyChain(process, VOCAB, LENGTH)
    if chain.endswith("denoiser"):
        return toy, samplers.Denoiser(toy.denoiser)
    if chain == "absorbing-x0":
        return toy, samplers.X0Predictor(exact_logits(toy), log=True)
    if chain == "uniform-x0":
        return toy, samplers.X0Predictor(toy.posterior)
    return toy, samplers.ConcreteScore(toy.score)


class SamplerContract:
    sampler_class: type[samplers.Sampler]
    chains: tuple[str, ...] = ("absorbing", "absorbing-denoiser", "uniform", "uniform-x0")
    coarse_steps: int | None = 2
    fine_steps: int | None = 128
    bias: float = 0.0  # discretisation error allowed at fine_steps (TV)

    def make(self, process: ctmc.ForwardProcess, steps: int | None, **options) -> samplers.Sampler:
        return self.sampler_class(process, steps=steps, eps=EPS, **options)

    def tv(self, chain: str, steps: int | None, seed: int = 0) -> tuple[float, float, int]:
        toy, model = make_toy(chain)
        result = self.make(toy.process, steps).generate(
            model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(seed)
        )
        return total_variation(toy.histogram(result.tokens), toy.p0), tv_noise_bound(toy.p0, NUM_SAMPLES), result.nfe

    def pytest_generate_tests(self, metafunc):
        if "chain" in metafunc.fixturenames:
            metafunc.parametrize("chain", self.chains)

    def test_exact_at_fine_steps_and_worse_at_coarse(self, chain):
        """Fine steps: TV(histogram, p0) within sampling noise + bias; coarse steps: detectably worse."""
        fine, bound, _ = self.tv(chain, self.fine_steps)
        coarse, _, _ = self.tv(chain, self.coarse_steps)
        assert fine <= bound + self.bias, (chain, fine, bound, self.bias)
        assert coarse > fine + bound, (chain, coarse, fine, bound)

    def test_shape_range_and_reproducible(self):
        toy, model = make_toy(self.chains[0])
        sampler = self.make(toy.process, 8)
        a = sampler.sample(model, 50, LENGTH, generator=torch.Generator().manual_seed(1))
        b = sampler.sample(model, 50, LENGTH, generator=torch.Generator().manual_seed(1))
        c = sampler.sample(model, 50, LENGTH, generator=torch.Generator().manual_seed(2))
        assert a.shape == (50, LENGTH) and a.dtype == torch.long
        assert int(a.min()) >= 0 and int(a.max()) < VOCAB  # no mask left
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_iterate_ends_at_generate_and_keeps_the_trajectory(self):
        """iterate: the start (the prior draw with the same generator, time 1, no call), one item per step with
        continuous times (each step starts where the last ended), the denoising step last iff `denoise`; its last
        item is generate's result, and keep_trajectory returns every item's state and time."""
        toy, model = make_toy(self.chains[0])
        sampler = self.make(toy.process, 8)
        steps = list(sampler.iterate(model, 32, LENGTH, generator=torch.Generator().manual_seed(0)))
        result = sampler.generate(model, 32, LENGTH, generator=torch.Generator().manual_seed(0), keep_trajectory=True)
        last = steps[-1]
        assert torch.equal(last.x, result.tokens) and (last.nfe, last.calls) == (result.nfe, result.calls)
        start = sampler.prior(32, LENGTH, torch.device("cpu"), torch.Generator().manual_seed(0))
        assert torch.equal(steps[0].x, start) and steps[0].nfe == 0 and bool((steps[0].s == 1).all())
        free = torch.ones_like(start, dtype=torch.bool)
        assert len(steps) == 1 + sampler.num_steps(start, free) + sampler.denoise
        assert [step.index for step in steps] == list(range(len(steps)))
        assert [step.denoising for step in steps] == [False] * (len(steps) - 1) + [sampler.denoise]
        for before, step in itertools.pairwise(steps):
            assert torch.equal(step.t, before.s) and bool((step.s <= step.t).all()) and step.nfe >= before.nfe
        assert result.states.shape == (len(steps), 32, LENGTH) and result.times.shape == (len(steps), 32)
        assert torch.equal(result.states, torch.stack([step.x for step in steps]))
        assert torch.equal(result.times, torch.stack([step.s for step in steps]))
        assert bool((result.times[-1] == 0).all()) == sampler.denoise
        plain = sampler.generate(model, 32, LENGTH, generator=torch.Generator().manual_seed(0))
        assert plain.states is None and plain.times is None and torch.equal(plain.tokens, result.tokens)

    def test_nfe_counts_network_calls(self):
        toy, _ = make_toy(self.chains[0])
        calls = []

        def counted(x, total):
            calls.append(1)
            return toy.score(x, total)

        result = self.make(toy.process, 8).generate(counted, 16, LENGTH, generator=torch.Generator().manual_seed(0))
        assert result.nfe == len(calls) > 0

    def test_prefix_fixed_and_rest_exactly_conditional(self):
        """Absorbing chain: the prefix never changes and the rest follows p0(x_1, x_2 | x_0 = 2) (enumeration)."""
        toy, model = make_toy("absorbing")
        prefix = torch.tensor([2])
        out = self.make(toy.process, self.fine_steps).sample(
            model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(3), prefix=prefix
        )
        assert bool((out[:, 0] == 2).all())
        conditional = toy.p0.view(VOCAB, VOCAB, VOCAB)[2].flatten()
        conditional = conditional / conditional.sum()
        hist = torch.bincount(out[:, 1] * VOCAB + out[:, 2], minlength=VOCAB**2).double() / NUM_SAMPLES
        assert total_variation(hist, conditional) <= tv_noise_bound(conditional, NUM_SAMPLES) + self.bias

    def test_infilling_mask_fixed_and_rest_exactly_conditional(self):
        """Absorbing chain: given positions (differing per row) never change; rows with the middle position
        given follow p0(x_0, x_2 | x_1 = tokens) (enumeration)."""
        toy, model = make_toy("absorbing")
        given = torch.zeros(NUM_SAMPLES, LENGTH, dtype=torch.bool)
        given[:, 1] = True
        given[: NUM_SAMPLES // 4, 2] = True  # a quarter of the rows also fix the last position
        tokens = torch.full((NUM_SAMPLES, LENGTH), 1)
        tokens[:, 2] = 0
        out = self.make(toy.process, self.fine_steps).sample(
            model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(4), given=given, tokens=tokens
        )
        assert torch.equal(out[given], tokens[given])
        rest = out[NUM_SAMPLES // 4 :]
        conditional = toy.p0.view(VOCAB, VOCAB, VOCAB)[:, 1, :].flatten()
        conditional = conditional / conditional.sum()
        hist = torch.bincount(rest[:, 0] * VOCAB + rest[:, 2], minlength=VOCAB**2).double() / rest.shape[0]
        assert total_variation(hist, conditional) <= tv_noise_bound(conditional, rest.shape[0]) + self.bias

    def test_given_positions_never_change_on_every_chain(self):
        for chain in self.chains:
            toy, model = make_toy(chain)
            given = torch.rand(64, LENGTH, generator=torch.Generator().manual_seed(5)) < 0.5
            tokens = torch.randint(0, VOCAB, (64, LENGTH), generator=torch.Generator().manual_seed(6))
            out = self.make(toy.process, 8).sample(model, 64, LENGTH, given=given, tokens=tokens)
            assert torch.equal(out[given], tokens[given]), chain

    def test_bad_input_raises(self):
        toy, model = make_toy(self.chains[0])
        with pytest.raises(ValueError, match="steps"):
            self.make(toy.process, 0)
        sampler = self.make(toy.process, 4)
        with pytest.raises(ValueError, match="does not fit"):
            sampler.sample(model, 2, LENGTH, prefix=torch.zeros(LENGTH + 1, dtype=torch.long))
        n = toy.process.num_states
        bad_outputs = {
            "returned shape": lambda x, total: torch.ones(*x.shape, n + 1),
            "negative": lambda x, total: -torch.ones(*x.shape, n),
            "non-finite": lambda x, total: torch.full((*x.shape, n), float("nan")),
        }
        for message, fn in bad_outputs.items():
            with pytest.raises(ValueError, match=message):
                sampler.sample(fn, 2, LENGTH)
