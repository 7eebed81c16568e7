"""A classifier of noisy sequences, log p_phi(c | x_t, sigma-bar), for predictor guidance (Nisonoff et al. 2024).

The DiT trunk (adaLN conditioned on the total noise sigma-bar, bidirectional attention, RoPE) gives per-position
class logits; the sequence's logits are their mean over the positions (mean pooling; since the head is linear,
this is the head applied to the mean of the normalised hidden states):

    logits(x, sigma)_c = (1 / L) sum_l (W FinalNorm(h_l) + b)_c,     log p_phi(c | x_t) = log_softmax(logits)_c.

Trained with the cross-entropy of the data label at x_t ~ q(x_t | x_0) over random times, it estimates the
p(c | x_t, t) of predictor guidance. The input may be token ids or float weights over the states (a one-hot),
through which the first-order guidance differentiates (samplers.guidance).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.noise_embedding import NoiseEmbedding
from models.presets import count_parameters, preset_arguments
from models.trunk import TransformerTrunk


class NoisyClassifier(nn.Module):
    """log p_phi(c | x_t, sigma-bar): x (B, L) in [0, vocab_size) (or (B, L, vocab_size) float weights), sigma (B,)
    -> (B, num_classes) log-probabilities (module docstring).

    vocab_size counts every state of the chain, as for models.DiT (the absorbing chain's mask included);
    num_classes >= 2. The head is zero at initialisation: the classifier starts at the uniform law over classes.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        cond_dim: int = 64,
        max_length: int = 1024,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
        local_mixing: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2 (all states, mask included), got {vocab_size!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (a classifier needs two classes), got {num_classes!r}")
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.max_length = max_length
        self.trunk = TransformerTrunk(
            num_states=vocab_size,
            output_size=num_classes,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            cond_dim=cond_dim,
            max_length=max_length,
            dropout=dropout,
            tie_weights=False,
            mlp_ratio=mlp_ratio,
            local_mixing=local_mixing,
        )
        self.noise_embedding = NoiseEmbedding(cond_dim)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, num_classes: int, **overrides: Any) -> NoisyClassifier:
        """The classifier with the size PRESETS[name]; overrides are any other constructor arguments."""
        return cls(vocab_size=vocab_size, num_classes=num_classes, **preset_arguments(name, **overrides))

    @property
    def num_parameters(self) -> int:
        """count_parameters(self): scalar parameters."""
        return count_parameters(self)

    def check_input(self, x: Tensor, sigma: Tensor) -> None:
        """Raise TypeError/ValueError naming the argument unless x is (B, L) long token ids (the trunk's check) or
        (B, L, vocab_size) float weights, and sigma a (B,) float tensor."""
        if isinstance(x, Tensor) and x.is_floating_point():
            if x.dim() != 3 or x.shape[-1] != self.vocab_size or not 1 <= x.shape[1] <= self.max_length:
                raise ValueError(
                    f"x as float weights must have shape (batch, length <= {self.max_length}, vocab_size="
                    f"{self.vocab_size}), got {tuple(x.shape)}; pass token ids or their one-hot"
                )
        else:
            self.trunk.check_tokens(x, allow_empty=False)
        if not isinstance(sigma, Tensor) or not sigma.is_floating_point() or sigma.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must be a (batch,) = ({x.shape[0]},) float tensor of total noise levels, got "
                f"{getattr(sigma, 'dtype', type(sigma).__name__)} {tuple(getattr(sigma, 'shape', ()))}"
            )

    def logits(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The pooled class logits (B, num_classes), float32 (float64 for a float64 model); x, sigma as in forward."""
        self.check_input(x, sigma)
        return self.trunk(x, self.noise_embedding(sigma)).mean(1)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """log p_phi(c | x_t, sigma-bar): x (B, L) long in [0, vocab_size) or (B, L, vocab_size) float weights;
        sigma (B,) float, the total noise sigma-bar(t). Returns (B, num_classes), logsumexp over c equal to 0."""
        return torch.log_softmax(self.logits(x, sigma), dim=-1)
