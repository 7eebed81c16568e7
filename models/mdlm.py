"""MDLM's SUBS denoiser (Sahoo et al. 2024): the SEDD diffusion transformer read as a clean-token denoiser.

MDLM's network is SEDD's DDiT (the same blocks, adaLN-conditioned on a noise level) with the SUBS
parameterisation on top (MDLM's diffusion.py, `_subs_parameterization`). With f the network's logits over the
V clean tokens (the mask's logit is dropped: SUBS gives the mask probability 0) and M the mask:

    log p_theta(x0_l = y | x_t) = log_softmax_y(f_l)                          if x_t^l = M   (zero masking probability)
    log p_theta(x0_l = y | x_t) = 0 if y = x_t^l, else CARRY_OVER_LOG_ZERO   if x_t^l != M  (carry-over unmasking)

MDLM writes log 0 as -1e6 (CARRY_OVER_LOG_ZERO), kept here so that outputs equal MDLM's entry by entry and no
-inf enters arithmetic downstream. With time_conditioning=False (MDLM's default and its released OWT model) the
network reads the noise level 0 whatever the time, exactly as MDLM does, so it is a time-independent denoiser.

Why a class and not an option of DiT or RADDDenoiser: DiT counts every state and returns log-scores shifted by
the noise level with a zero at the input token; RADDDenoiser returns clean-token log-probabilities but has no noise
conditioning at all. MDLM needs the DiT trunk and noise embedding (its checkpoints carry the adaLN weights) with
a clean-token head, so this class is the DiT's parts with RADD's output: a head of V columns and the SUBS rule.
"""

from typing import Any

import torch
from torch import Tensor, nn

from ctmc.checks import check_int
from models.noise_embedding import NoiseEmbedding, check_total_noise
from models.presets import count_parameters, preset_arguments
from models.trunk import TransformerTrunk, check_where

CARRY_OVER_LOG_ZERO = -1_000_000.0  # MDLM's `neg_infinity`: the log-probability of every other token at a clean one


def carry_over(log_probs: Tensor, tokens: Tensor, mask_index: int) -> Tensor:
    """SUBS carry-over: rows whose input token is not the mask become the log one-hot of that token.

    log_probs: (R, V) float; tokens: (R,) long in [0, V], mask_index = V. Returns (R, V): row r unchanged where
    tokens[r] == mask_index, else CARRY_OVER_LOG_ZERO everywhere and 0 at column tokens[r]. Rows that are all
    masked (what a loss or a sampler asks for) are returned without a copy.
    """
    clean = tokens != mask_index  # (R,)
    if not torch.compiler.is_compiling() and not bool(clean.any()):
        return log_probs
    out = log_probs.masked_fill(clean[:, None], CARRY_OVER_LOG_ZERO)
    rows = clean.nonzero().squeeze(-1)
    return out.index_put_((rows, tokens[rows]), torch.zeros((), dtype=out.dtype, device=out.device))


class MDLMDenoiser(nn.Module):
    """Tokens (B, L) in [0, V] (V = vocab_size is the mask) -> log p_theta(x0 | x_t) (B, L, V), SUBS (module doc).

    The trunk and noise embedding of DiT (adaLN-Zero blocks conditioned on c = NoiseEmbedding(sigma)), a head of
    V columns. time_conditioning=False: the noise level fed to the embedding is 0 for every input and `sigma` is
    ignored (MDLM's default); True: `sigma` is the total noise sigma-bar (B,), as for DiT.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        cond_dim: int = 64,
        max_length: int = 1024,
        dropout: float = 0.0,
        time_conditioning: bool = False,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1, "count the data tokens, the mask excluded")
        if not isinstance(time_conditioning, bool):
            raise TypeError(f"time_conditioning must be a bool, got {type(time_conditioning).__name__}")
        self.vocab_size = vocab_size
        self.max_length = max_length  # longest accepted input
        self.time_conditioning = time_conditioning
        self.trunk = TransformerTrunk(
            num_states=vocab_size + 1,
            output_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            cond_dim=cond_dim,
            max_length=max_length,
            dropout=dropout,
            tie_weights=False,
            mlp_ratio=mlp_ratio,
        )
        self.noise_embedding = NoiseEmbedding(cond_dim)  # after the trunk, which validates cond_dim

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: Any) -> "MDLMDenoiser":
        """MDLMDenoiser with the size PRESETS[name]; overrides are any other constructor arguments."""
        return cls(vocab_size=vocab_size, **preset_arguments(name, **overrides))

    @property
    def mask_index(self) -> int:
        """The index of the mask state: vocab_size."""
        return self.vocab_size

    @property
    def num_parameters(self) -> int:
        """count_parameters(self): scalar parameters."""
        return count_parameters(self)

    def forward(self, x: Tensor, sigma: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        """log p_theta(x0_l = y | x): x (B, L) long in [0, V]; sigma (B,) float, the total noise sigma-bar (read only
        with time_conditioning, else ignored); where: None or a (B, L) bool of the positions to output. Returns
        (B, L, V), or with `where` the packed (where.sum(), V) rows of where.nonzero() in row-major order (the same
        values); float32 (float64 for a float64 model); each row's logsumexp is 0.
        """
        self.trunk.check_tokens(x)
        check_where(where, x.shape)
        if self.time_conditioning:
            if sigma is None:
                raise TypeError("sigma is required: this MDLM model has time_conditioning=True; pass sigma-bar (B,)")
            check_total_noise(sigma, x.shape[0])
        else:
            sigma = torch.zeros(x.shape[0], device=x.device)  # MDLM feeds noise level 0 without time conditioning
        rows = self.trunk.output_rows(x, self.noise_embedding(sigma), where)
        log_probs = carry_over(torch.log_softmax(rows.logits, dim=-1), rows.tokens, self.mask_index)
        return log_probs if where is not None else log_probs.view(*x.shape, self.vocab_size)
