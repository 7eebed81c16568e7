"""Multi-head self-attention with rotary position embedding, via PyTorch's SDPA: bidirectional, or causal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from models.rotary import Rotation, apply_rotary

if TYPE_CHECKING:
    from models.kv_cache import LayerCache


class SelfAttention(nn.Module):
    """softmax(rope(Q) rope(K)^T / sqrt(D) + M) V per head, no biases (as in SEDD).

    M = 0 (bidirectional, the diffusion networks) or, with causal=True, M[l, m] = -inf for m > l, so that
    position l attends to positions <= l only (the autoregressive model). hidden_size = num_heads * D, with
    the head size D even (RoPE rotates pairs).
    """

    def __init__(self, hidden_size: int, num_heads: int, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self, h: Tensor, rotation: Rotation, mask: Tensor | None = None, cache: LayerCache | None = None
    ) -> Tensor:
        """h: (B, L, hidden_size); rotation: tables of shape (L, D). Returns (B, L, hidden_size).

        mask: None, or an (L, P + L) bool, True where query l may attend to key m (a bidirectional layer only:
        it replaces M = 0); cache: None, or the layer's `models.kv_cache.LayerCache`, whose P stored keys and
        values (already rotated) come before this call's L (and which keeps them all when it stores).
        """
        batch, length, _ = h.shape
        qkv = self.qkv(h).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, D)
        query = apply_rotary(query, rotation)
        key = apply_rotary(key, rotation)
        if cache is not None:
            key, value = cache.extend(key, value)  # (B, H, P + L, D)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, is_causal=self.causal
        )  # (B, H, L, D)
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))
