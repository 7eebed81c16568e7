"""Every sampler against the contract (tests/samplers/sampler_contract.py): exactness with exact scores on a
toy chain, conditioning, reproducibility, NFE and bad input. Bias allowances at 128 steps: Euler, tau-leaping
and Tweedie are first-order in the step for the joint law (several positions may move in one step from the
same x_t), so we allow 0.01 in TV (measured: <= 0.005 above the noise floor at 128 steps)."""

from sampler_contract import SamplerContract

import samplers


class TestEuler(SamplerContract):
    sampler_class = samplers.EulerSampler
    bias = 0.01


class TestTweedie(SamplerContract):
    sampler_class = samplers.TweedieSampler
    bias = 0.01


class TestTauLeaping(SamplerContract):
    sampler_class = samplers.TauLeapingSampler
    bias = 0.01


class TestFirstHitting(SamplerContract):
    """Exact with one token per call: no bias allowance at all; steps=1 decodes every position at once."""

    sampler_class = samplers.FirstHittingSampler
    chains = ("absorbing", "absorbing-denoiser")
    coarse_steps = 1
    fine_steps = None
    bias = 0.0
