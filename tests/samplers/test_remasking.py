"""ReMDM remasking (samplers/remasking.py): the shared contract, exactness of the forward marginals at one
position for every schedule and strength (enumeration: with L = 1 the posterior keeps p_s exactly, so any number
of steps draws p0), convergence to p0 on the toy chain as steps grow at several strengths, and bad input."""

import pytest
import torch
from sampler_contract import EPS, LENGTH, NUM_SAMPLES, VOCAB, SamplerContract, make_toy
from sampler_toy import ToyChain, total_variation, tv_noise_bound

import ctmc
import samplers


class TestReMDM(SamplerContract):
    """Remasking at the forward rate (strength 1); bias allowance 0.01 at 128 steps (measured <= 0.007 above
    the noise floor, benchmarks/bench_samplers.py)."""

    sampler_class = samplers.ReMDMSampler
    chains = ("absorbing", "absorbing-denoiser", "absorbing-x0")
    bias = 0.01


@pytest.mark.parametrize(("remasking", "strength"), [("rate", 3.0), ("cap", 0.5), ("rescale", 1.0)])
def test_one_position_is_exact_at_any_step_count(remasking, strength):
    """L = 1: P(z_s = x) = alpha_s for any sigma_t, so even 3 steps give p0 exactly (within sampling noise)."""
    process = ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(1e-4))
    toy = ToyChain(process, VOCAB, 1)
    sampler = samplers.ReMDMSampler(process, steps=3, eps=EPS, remasking=remasking, strength=strength)
    out = sampler.sample(samplers.Denoiser(toy.denoiser), NUM_SAMPLES, 1, generator=torch.Generator().manual_seed(0))
    assert total_variation(toy.histogram(out), toy.p0) <= tv_noise_bound(toy.p0, NUM_SAMPLES)


@pytest.mark.parametrize("strength", [0.5, 4.0])
def test_reaches_the_data_law_as_steps_grow(strength):
    """Toy chain (V = L = 3), exact denoiser: TV within noise + 0.01 at 128 steps, clearly larger at 4 steps."""
    toy, model = make_toy("absorbing-denoiser")

    def tv(steps: int) -> float:
        sampler = samplers.ReMDMSampler(toy.process, steps=steps, eps=EPS, strength=strength)
        out = sampler.sample(model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(1))
        return total_variation(toy.histogram(out), toy.p0)

    bound = tv_noise_bound(toy.p0, NUM_SAMPLES)
    fine = tv(128)
    assert fine <= bound + 0.01
    assert tv(4) > fine + bound


def test_remasking_probability_within_bounds_and_zero_strength_never_remasks():
    toy, _ = make_toy("absorbing")
    total_t = toy.process.total(torch.linspace(0.01, 1.0, 50, dtype=torch.float64))
    total_s = toy.process.total(torch.linspace(0.005, 0.99, 50, dtype=torch.float64))
    most = (-torch.expm1(-total_s) * torch.exp(total_t)).clamp(max=1.0)
    for remasking, strength in [("rate", 2.0), ("cap", 0.3), ("rescale", 0.7), ("rate", 0.0)]:
        sampler = samplers.ReMDMSampler(toy.process, remasking=remasking, strength=strength)
        sigma = sampler.remasking_probability(total_t, total_s)
        assert bool((sigma >= 0).all()) and bool((sigma <= most + 1e-12).all())
        assert bool((sigma == 0).all()) == (strength == 0.0)


def test_bad_input_raises():
    toy, _ = make_toy("uniform")
    with pytest.raises(TypeError, match="absorbing"):
        samplers.ReMDMSampler(toy.process)
    toy, _ = make_toy("absorbing")
    with pytest.raises(ValueError, match="remasking"):
        samplers.ReMDMSampler(toy.process, remasking="loop")
    with pytest.raises(ValueError, match="strength"):
        samplers.ReMDMSampler(toy.process, remasking="cap", strength=1.5)
