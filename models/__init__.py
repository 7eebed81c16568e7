"""Plain nn.Module networks: the SEDD score transformer, the RADD and MDLM denoisers, the block diffusion
denoiser (BlockDenoiser) and an autoregressive baseline.

Nothing here knows about Lightning or CTMCs: a network maps tokens (B, L) (and a noise level) to
(B, L, S) log-scores or log-probabilities (the AR model: next-token log-probabilities). `from_pretrained` loads
the papers' released checkpoints into them (models.pretrained). See docs/models.md.
"""

from models.ar import ARTransformer
from models.block_denoiser import BlockDenoiser
from models.classifier import NoisyClassifier
from models.dit import DiT, log_expm1
from models.labels import drop_labels
from models.mdlm import MDLMDenoiser
from models.presets import PRESETS, ModelSize, count_parameters
from models.pretrained import PretrainedInfo, from_pretrained
from models.radd import RADDDenoiser
from models.rotary import Rotation, apply_rotary, rotary_rotation

__all__ = [
    "PRESETS",
    "ARTransformer",
    "BlockDenoiser",
    "DiT",
    "MDLMDenoiser",
    "ModelSize",
    "NoisyClassifier",
    "PretrainedInfo",
    "RADDDenoiser",
    "Rotation",
    "apply_rotary",
    "count_parameters",
    "drop_labels",
    "from_pretrained",
    "log_expm1",
    "rotary_rotation",
]
