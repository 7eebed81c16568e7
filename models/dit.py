"""The SEDD score network (Lou et al. 2024): a diffusion transformer conditioned on the total noise level.

forward(x, sigma) returns log s_theta(x, sigma)_{l, y}, the log concrete score log p_t(x with x_l = y) /
p_t(x) at every position l and state y. Since the score at y = x_l is 1, that entry is set to exactly 0
(as SEDD's code does for every graph).

Absorbing parameterisation (SEDD's ``scale_by_sigma``, "esigm1_log" in model/transformer.py). With N
vocabulary states including the mask, the network output f is shifted to

    log s_theta(x, sigma)_y = f_y - log(e^sigma - 1) - log(N - 1).

At a masked position the true score is p(x0 = y | unmasked) / (e^sigma - 1), so f = 0 (the zero-initialised
output head) starts training at the score of a uniform denoiser over the N - 1 clean tokens.
"""

import math
from typing import Any

import torch
from torch import Tensor, nn

from ctmc.checks import check_int
from ctmc.noise_ratio import log_expm1
from models.labels import LabelEmbedding, check_num_classes, label_vector
from models.noise_embedding import NoiseEmbedding, check_total_noise
from models.presets import count_parameters, preset_arguments
from models.trunk import TransformerTrunk, check_where


class _ZeroAtTokens(torch.autograd.Function):
    """rows[r, tokens[r]] = 0 in place. The gradient of the zeroed entries is 0; the backward returns the incoming
    gradient itself when it is already 0 there (every loss in `losses` leaves the term y = x_t out, so it is),
    and otherwise a copy with those entries zeroed. An in-place scatter's own backward always copies the
    (rows, n) gradient: 5% of a uniform-chain training step at B = 8, L = 128, V = 50,257."""

    @staticmethod
    def forward(ctx, rows: Tensor, tokens: Tensor) -> Tensor:
        ctx.mark_dirty(rows)
        ctx.save_for_backward(tokens)
        return rows.scatter_(-1, tokens[:, None], 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (tokens,) = ctx.saved_tensors
        if bool((grad.gather(-1, tokens[:, None]) == 0).all()):
            return grad, None
        return grad.scatter(-1, tokens[:, None], 0.0), None


def zero_at_tokens(rows: Tensor, tokens: Tensor) -> Tensor:
    """rows (R, n) float with rows[r, tokens[r]] set to 0 in place (tokens: (R,) long); differentiable, with
    the gradient of a scatter of zeros, and no copy of the gradient when it is already 0 at those entries."""
    return _ZeroAtTokens.apply(rows, tokens)


class DiT(nn.Module):
    """SEDD diffusion transformer: tokens (B, L), total noise sigma-bar (B,) -> log-scores (B, L, vocab_size).

    vocab_size counts every state of the chain; for the absorbing chain it includes the mask token, which is
    the last index vocab_size - 1. The noise level enters through NoiseEmbedding and adaLN-Zero in every block
    and in the final norm (see models.block). With absorbing_parameterization the output is shifted by
    -log(e^sigma - 1) - log(vocab_size - 1) (module docstring). tie_weights uses the token embedding as the
    output projection (the output is then not zero at initialisation). local_mixing = k > 0 adds a width-k
    residual depthwise convolution on the embeddings and before every block (models.local_mixing).
    num_classes = C > 0 makes the network class-conditional (as class-conditional DiT, Peebles & Xie 2023): a
    zero-initialised (C + 1)-row label embedding (models.labels; row C is the null label) is added to the noise
    embedding, so the label reaches every adaLN; 0 (the default) is the unconditional network, with exactly its
    old parameters.
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
        absorbing_parameterization: bool = False,
        tie_weights: bool = False,
        mlp_ratio: int = 4,
        local_mixing: int = 0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 2, "count all states, mask included")
        self.num_classes = check_num_classes(num_classes)
        self.vocab_size = vocab_size
        self.max_length = max_length  # longest accepted input
        self.absorbing_parameterization = absorbing_parameterization
        self.trunk = TransformerTrunk(
            num_states=vocab_size,
            output_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            cond_dim=cond_dim,
            max_length=max_length,
            dropout=dropout,
            tie_weights=tie_weights,
            mlp_ratio=mlp_ratio,
            local_mixing=local_mixing,
        )
        self.noise_embedding = NoiseEmbedding(cond_dim)  # after the trunk, which validates cond_dim
        self.label_embedding = LabelEmbedding(num_classes, cond_dim) if num_classes else None

    def conditioning(self, sigma: Tensor, label: Tensor | None = None) -> Tensor:
        """The adaLN conditioning c (B, cond_dim): the noise embedding of sigma (B,), plus the label embedding of
        label ((B,) long in [0, num_classes], None: the null label) for a conditional network."""
        cond = self.noise_embedding(sigma)
        shift = label_vector(self.label_embedding, label, sigma.shape[0])
        return cond if shift is None else cond + shift.to(cond.dtype)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: Any) -> "DiT":
        """DiT with the size PRESETS[name]; overrides are any other constructor arguments."""
        return cls(vocab_size=vocab_size, **preset_arguments(name, **overrides))

    @property
    def num_parameters(self) -> int:
        """count_parameters(self): scalar parameters, tied tensors counted once."""
        return count_parameters(self)

    def check_sigma(self, sigma: Tensor, batch_size: int) -> None:
        """Raise a TypeError/ValueError naming `sigma` unless it is a (batch_size,) finite float tensor, >= 0
        (> 0 with the absorbing parameterisation, where log(e^sigma - 1) diverges at 0).
        """
        check_total_noise(sigma, batch_size, positive=self.absorbing_parameterization)

    @torch.no_grad()
    def init_output_bias(self, log_probs: Tensor) -> None:
        """Start at the score of the clean-token distribution log_probs (V,) = (vocab_size - 1,), e.g. the log
        unigram frequencies: with the absorbing parameterisation the score at a masked position is
        p(y) / (e^sigma - 1) for f_y = log p(y) + log(vocab_size - 1) (module docstring); the mask column stays 0.
        """
        if not self.absorbing_parameterization:
            raise ValueError("init_output_bias needs absorbing_parameterization=True (a masked position's score)")
        if log_probs.shape != (self.vocab_size - 1,):
            raise ValueError(
                f"log_probs must have shape (vocab_size - 1,) = ({self.vocab_size - 1},), got {tuple(log_probs.shape)}"
            )
        self.trunk.output_bias[:-1].copy_(log_probs + math.log(self.vocab_size - 1))

    def forward(
        self, x: Tensor, sigma: Tensor, where: Tensor | None = None, label: Tensor | None = None
    ) -> Tensor:
        """log s_theta(x, sigma[, c]): x (B, L) long in [0, vocab_size); sigma (B,) float, the total noise
        sigma-bar(t); where: None or a (B, L) bool of the positions to output; label: (B,) long in [0, num_classes]
        (num_classes: the null label) or None (the null label), only with num_classes > 0. Returns
        (B, L, vocab_size), or with `where` the packed (where.sum(), vocab_size) rows of the positions
        where.nonzero() in row-major order (the same values); float32 (float64 for a float64 model), 0 at the input
        token of every row.

        The shift and the zero at the input token are written in place into the (rows, vocab_size) projection, so
        that neither the forward nor the backward copies the output (models.trunk.TransformerTrunk.output_rows).
        """
        self.trunk.check_tokens(x)
        self.check_sigma(sigma, x.shape[0])
        check_where(where, x.shape)
        rows = self.trunk.output_rows(x, self.conditioning(sigma, label), where)
        log_score = rows.logits  # (R, vocab_size)
        if self.absorbing_parameterization:
            shift = log_expm1(sigma.to(log_score.dtype)) + math.log(self.vocab_size - 1)  # (B,)
            log_score.sub_(shift[rows.batch_index, None])
        log_score = zero_at_tokens(log_score, rows.tokens)
        return log_score if where is not None else log_score.view(*x.shape, self.vocab_size)
