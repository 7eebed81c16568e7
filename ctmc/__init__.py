"""Continuous-time Markov chains on a finite state space: the mathematical core of the toolkit.

Conventions (docs/conventions.md): row convention, `Q[i, j]` is the jump rate from state i to state j
(i != j) and every row of Q sums to zero; P'(t) = P(t) Q = Q P(t), P(t) = exp(tQ), distributions are row
vectors p_t = p_0 P(t). Diffusion time runs from 0 (data) to 1 (noise). The absorbing chain's mask is the
last state, index `vocab_size`. `from_column_convention` converts a matrix written for dp/dt = Q p.

Depends on torch only.
"""

from ctmc.absorbing import Absorbing
from ctmc.birth_death import BirthDeath
from ctmc.categorical import sample_categorical
from ctmc.dense import Dense
from ctmc.discrete_time import DiscreteTimeChain
from ctmc.forward_process import ForwardProcess
from ctmc.hybrid import Hybrid
from ctmc.noise_ratio import log_expm1, log_mask_ratio
from ctmc.radd import denoiser_to_score, score_to_denoiser
from ctmc.rate_matrix import RateMatrix, from_column_convention, to_column_convention, validate_generator
from ctmc.reverse import reverse_rates
from ctmc.schedules import Geometric, LogLinear, NoiseSchedule, PiecewiseLinear
from ctmc.uniform import Uniform

__all__ = [
    "Absorbing",
    "BirthDeath",
    "Dense",
    "DiscreteTimeChain",
    "ForwardProcess",
    "Geometric",
    "Hybrid",
    "LogLinear",
    "NoiseSchedule",
    "PiecewiseLinear",
    "RateMatrix",
    "Uniform",
    "denoiser_to_score",
    "from_column_convention",
    "log_expm1",
    "log_mask_ratio",
    "reverse_rates",
    "sample_categorical",
    "score_to_denoiser",
    "to_column_convention",
    "validate_generator",
]
