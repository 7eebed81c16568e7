"""The RADD time-independent denoiser (Ou et al. 2024).

For the absorbing chain the concrete score at a masked position factorises as

    s(x_t, t)_{l, y} = e^{-sigma} / (1 - e^{-sigma}) * p(x0_l = y | unmasked tokens of x_t),

so a network without any time input only has to model the clean-data conditionals. This module returns
log p_theta(x0_l = y | x_t) over the V clean tokens; the time factor is applied in the losses package.
"""


import torch
from torch import Tensor

from models.token_transformer import TokenTransformer
from models.trunk import check_where


class RADDDenoiser(TokenTransformer):
    """Tokens (B, L) in [0, V] (V = vocab_size is the mask) -> log-probabilities (B, L, V) of the clean token.

    The same trunk as DiT with plain pre-LN blocks (learned affine LayerNorm) and no noise input at all.
    There are only V output columns because the mask token has probability zero under p(x0 | x_t).
    tie_weights uses the first V rows of the (V + 1)-row token embedding as the output projection.
    """

    causal = False
    extra_state = "mask"

    @property
    def mask_index(self) -> int:
        """The index of the mask state: vocab_size."""
        return self.vocab_size

    def forward(
        self, x: Tensor, sigma: Tensor | None = None, where: Tensor | None = None, label: Tensor | None = None
    ) -> Tensor:
        """log p_theta(x0_l = y | x[, c]): x (B, L) long in [0, V]; sigma is accepted and ignored, so that DiT and
        RADDDenoiser share a call signature; where: None or a (B, L) bool of the positions to output; label: (B,)
        long in [0, num_classes] (num_classes: the null label) or None (the null label), only with num_classes > 0.
        Returns (B, L, V), or with `where` the packed (where.sum(), V) rows of where.nonzero() in row-major order
        (the same values), float32 (float64 for a float64 model) with logsumexp over y equal to 0.
        """
        del sigma  # time-independent by construction
        self.trunk.check_tokens(x)
        check_where(where, x.shape)
        shift = self.label_shift(label, x.shape[0])
        return torch.log_softmax(self.trunk(x, where=where, shift=shift), dim=-1)
