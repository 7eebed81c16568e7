"""Pre-LN transformer block, with optional adaLN conditioning (DiT, Peebles & Xie 2023; SEDD).

With a conditioning vector c (cond_dim given), a zero-initialised linear map gives six vectors
(shift1, scale1, gate1, shift2, scale2, gate2) = W c + b, and

    h <- h + gate1 * Attn(modulate(LN(h), shift1, scale1))
    h <- h + gate2 * MLP(modulate(LN(h), shift2, scale2)),

with modulate(z, shift, scale) = z (1 + scale) + shift.

Zero initialisation makes every conditioned block the identity at the start of training ("adaLN-Zero").
Without conditioning (cond_dim None) the block is the plain pre-LN block with a learned affine LayerNorm:

    h <- h + Attn(LN(h));   h <- h + MLP(LN(h)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from models.attention import SelfAttention
from models.norm import FloatLayerNorm
from models.rotary import Rotation

if TYPE_CHECKING:
    from models.kv_cache import LayerCache


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (1 + scale) + shift. x: (B, L, H); shift, scale: (B, 1, H) (or all three (R, H)). Returns x's shape."""
    return x * (1 + scale) + shift


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear map with weight and bias initialised to zero (adaLN-Zero, zero output heads)."""
    linear = nn.Linear(in_features, out_features)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class TransformerBlock(nn.Module):
    """One pre-LN attention + MLP block; adaLN-Zero modulated when cond_dim is given (see module doc).

    causal=True masks attention to later positions (models.attention.SelfAttention).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        cond_dim: int | None = None,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        conditioned = cond_dim is not None
        # Under adaLN the shift plays the role of the LayerNorm bias, so (as in SEDD) the norm has none.
        self.attention_norm = FloatLayerNorm(hidden_size, bias=not conditioned)
        self.attention = SelfAttention(hidden_size, num_heads, causal)
        self.mlp_norm = FloatLayerNorm(hidden_size, bias=not conditioned)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_ratio * hidden_size),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * hidden_size, hidden_size),
        )
        self.dropout = nn.Dropout(dropout)
        self.modulation = zero_linear(cond_dim, 6 * hidden_size) if conditioned else None

    def forward(
        self,
        h: Tensor,
        rotation: Rotation,
        cond: Tensor | None = None,
        mask: Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """h: (B, L, H); rotation: RoPE tables (L, H / num_heads); cond: (B, cond_dim) or None; mask, cache: the
        attention's (models.attention.SelfAttention.forward), None by default.

        Returns (B, L, H).
        """
        if self.modulation is None:
            h = h + self.dropout(self.attention(self.attention_norm(h), rotation, mask, cache))
            return h + self.dropout(self.mlp(self.mlp_norm(h)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None, :].chunk(6, dim=-1)
        attention_input = modulate(self.attention_norm(h), shift1, scale1)
        h = h + gate1 * self.dropout(self.attention(attention_input, rotation, mask, cache))
        mlp_input = modulate(self.mlp_norm(h), shift2, scale2)
        return h + gate2 * self.dropout(self.mlp(mlp_input))


class FinalNorm(nn.Module):
    """The last normalisation before the output projection: modulate(LN(h), shift, scale) with
    (shift, scale) = W c + b zero-initialised when cond_dim is given, else a learned affine LN(h).
    """

    def __init__(self, hidden_size: int, cond_dim: int | None = None) -> None:
        super().__init__()
        conditioned = cond_dim is not None
        self.norm = FloatLayerNorm(hidden_size, bias=not conditioned)
        self.modulation = zero_linear(cond_dim, 2 * hidden_size) if conditioned else None

    def forward(self, h: Tensor, cond: Tensor | None = None, batch_index: Tensor | None = None) -> Tensor:
        """h: (B, L, H), or rows (R, H) of sequences batch_index (R,) long; cond: (B, cond_dim) or None.

        Returns h's shape. The rows form lets the network normalise only the positions it projects.
        """
        if self.modulation is None:
            return self.norm(h)
        modulation = self.modulation(cond)  # (B, 2H)
        modulation = modulation[:, None, :] if batch_index is None else modulation[batch_index]
        shift, scale = modulation.chunk(2, dim=-1)
        return modulate(self.norm(h), shift, scale)
