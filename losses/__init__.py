"""Training losses for CTMC discrete diffusion, each an `nn.Module` built on a `ctmc.ForwardProcess`.

- `ScoreEntropy`: SEDD's denoising score entropy for concrete-score networks (absorbing, uniform, any chain).
- `TDCE`, `LambdaDCE`, `MDLMNELBO`: RADD/MDLM losses for a time-independent clean-token denoiser (absorbing).
- `D3PMLoss`: D3PM's discrete-time variational bound with the hybrid cross-entropy.
- `denoiser_to_score`, `score_to_denoiser`: RADD's factorisation of the absorbing score.
- `bits_per_token`, `perplexity_bound`: evaluation units from a loss in nats.
- `PriorKL`, `forward_prior`: the t = 1 prior term that makes the ELBO a true bound.
- `any_order_log_likelihood`, `denoiser_from_score_network`: exact fixed-order likelihood (absorbing chain).
- `MaskedCountEstimator`: low-variance importance sampler of (t, x_t) over the masked count (absorbing chain).
- `BlockDiffusionLoss`: the block diffusion bound (BD3-LM): a masked-diffusion bound per block given the clean prefix.

Every `forward(output, x0, x_t, t)` returns a (B,) per-sequence loss in nats whose expectation under
`sample_time` is the negative ELBO (docs/losses.md).
"""

from ctmc.noise_ratio import log_expm1, log_mask_ratio
from ctmc.radd import denoiser_to_score, score_to_denoiser
from losses.any_order import any_order_log_likelihood, denoiser_from_score_network
from losses.base import DiffusionLoss
from losses.block_diffusion import BlockDiffusionLoss
from losses.d3pm import D3PMLoss
from losses.estimators import ESTIMATORS, MaskedCountEstimator, NoiseDraw, estimator_for, stratified_counts
from losses.masked_denoising import MDLMNELBO, TDCE, LambdaDCE, MaskedDenoisingLoss
from losses.metrics import bits_per_token, perplexity_bound
from losses.prior import PriorKL, forward_prior
from losses.score_entropy import ScoreEntropy, bregman_phi

__all__ = [
    "ESTIMATORS",
    "MDLMNELBO",
    "TDCE",
    "BlockDiffusionLoss",
    "D3PMLoss",
    "DiffusionLoss",
    "LambdaDCE",
    "MaskedCountEstimator",
    "MaskedDenoisingLoss",
    "NoiseDraw",
    "PriorKL",
    "ScoreEntropy",
    "any_order_log_likelihood",
    "bits_per_token",
    "bregman_phi",
    "denoiser_from_score_network",
    "denoiser_to_score",
    "estimator_for",
    "forward_prior",
    "log_expm1",
    "log_mask_ratio",
    "perplexity_bound",
    "score_to_denoiser",
    "stratified_counts",
]
