"""The RADD time-independent denoiser (Ou et al. 2024).

For the absorbing chain the concrete score at a masked position factorises as

    s(x_t, t)_{l, y} = e^{-sigma} / (1 - e^{-sigma}) * p(x0_l = y | unmasked tokens of x_t),

so a network without any time input only has to model the clean-data conditionals. This module returns
log p_theta(x0_l = y | x_t) over the V clean tokens; the time factor is applied in the losses package.
"""

from typing import Any

import torch
from torch import Tensor, nn

from models.presets import count_parameters, preset_arguments
from models.trunk import TransformerTrunk


class RADDDenoiser(nn.Module):
    """Tokens (B, L) in [0, V] (V = vocab_size is the mask) -> log-probabilities (B, L, V) of the clean token.

    The same trunk as DiT with plain pre-LN blocks (learned affine LayerNorm) and no noise input at all.
    There are only V output columns because the mask token has probability zero under p(x0 | x_t).
    tie_weights uses the first V rows of the (V + 1)-row token embedding as the output projection.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        max_length: int = 1024,
        dropout: float = 0.0,
        tie_weights: bool = False,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1 (clean tokens, mask excluded), got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.max_length = max_length  # longest accepted input
        self.mask_index = vocab_size
        self.trunk = TransformerTrunk(
            num_states=vocab_size + 1,
            output_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            cond_dim=None,
            max_length=max_length,
            dropout=dropout,
            tie_weights=tie_weights,
            mlp_ratio=mlp_ratio,
        )

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: Any) -> "RADDDenoiser":
        """RADDDenoiser with the size PRESETS[name] (cond_dim unused); overrides as in the constructor."""
        arguments = preset_arguments(name, **overrides)
        arguments.pop("cond_dim")
        return cls(vocab_size=vocab_size, **arguments)

    @property
    def num_parameters(self) -> int:
        """count_parameters(self): scalar parameters, tied tensors counted once."""
        return count_parameters(self)

    @torch.no_grad()
    def init_output_bias(self, log_probs: Tensor) -> None:
        """Set the output bias to log_probs (V,), e.g. log unigram frequencies: with the zero output weight the
        network starts as that unigram denoiser."""
        if log_probs.shape != (self.vocab_size,):
            raise ValueError(
                f"log_probs must have shape (vocab_size,) = ({self.vocab_size},), got {tuple(log_probs.shape)}"
            )
        self.trunk.output_bias.copy_(log_probs)

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        """log p_theta(x0_l = y | x): x (B, L) long in [0, V]; sigma is accepted and ignored, so that DiT and
        RADDDenoiser share a call signature. Returns (B, L, V) float32 (float64 for a float64 model)
        with logsumexp over y equal to 0.
        """
        del sigma  # time-independent by construction
        self.trunk.check_tokens(x)
        return torch.log_softmax(self.trunk(x), dim=-1)
