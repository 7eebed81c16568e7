"""Reverse-time samplers for CTMC discrete diffusion (docs/samplers.md).

Every sampler is built from a `ctmc.ForwardProcess` and its settings and draws with
`sampler.sample(model, batch_size, length, generator=..., prefix=..., given=..., tokens=...)` -> (B, L) long,
or `sampler.generate(...)` -> `SamplingResult(tokens, nfe)`, or step by step with `sampler.iterate(...)` ->
`SamplingStep`s. `model` is a `ConcreteScore` (score(x, sigma-bar)), a `Denoiser` (p(x_0 | x_t), absorbing
chain), an `X0Predictor` (p(x_0 | x_t, sigma-bar), any chain), or a bare score callable; with `positions=True`
the callable also takes `where` (B, L) bool and returns only those rows, packed, and the samplers ask only for the
positions they need (the masks on the absorbing chain, the reveals of first-hitting and ReMDM).
`classifier_free_guidance` and `predictor_guidance` wrap a model into a guided one of the same contract, so every
sampler draws class-conditional samples unchanged (samplers.guidance).

`BlockSampler` (block diffusion, with a key/value cache) and `SemiAutoregressiveSampler` (a plain masked model
past its length) draw text of any length block after block with any of these samplers inside a block.

Depends on torch and ctmc only (no Lightning, no tokenizer).
"""

from samplers.autoregressive import ancestral_sample
from samplers.base import Sampler, SamplingResult, SamplingStep
from samplers.block import BlockModel, BlockSampler, BlockSamplingResult, SemiAutoregressiveSampler
from samplers.decoding import Decoding
from samplers.euler import EulerSampler
from samplers.first_hitting import FirstHittingSampler
from samplers.guidance import classifier_free_guidance, guided_log_values, predictor_guidance
from samplers.metrics import unigram_entropy
from samplers.models import ConcreteScore, Denoiser, ModelOutput, X0Predictor, as_model, network_model
from samplers.remasking import ReMDMSampler
from samplers.tau_leaping import TauLeapingSampler
from samplers.trapezoidal import RK2Sampler, TrapezoidalSampler
from samplers.tweedie import TweedieSampler

__all__ = [
    "BlockModel",
    "BlockSampler",
    "BlockSamplingResult",
    "ConcreteScore",
    "Decoding",
    "Denoiser",
    "EulerSampler",
    "FirstHittingSampler",
    "ModelOutput",
    "RK2Sampler",
    "ReMDMSampler",
    "Sampler",
    "SamplingResult",
    "SamplingStep",
    "SemiAutoregressiveSampler",
    "TauLeapingSampler",
    "TrapezoidalSampler",
    "TweedieSampler",
    "X0Predictor",
    "ancestral_sample",
    "as_model",
    "classifier_free_guidance",
    "guided_log_values",
    "network_model",
    "predictor_guidance",
    "unigram_entropy",
]
