"""Key/value cache of the attention layers over a clean prefix (block diffusion sampling, Arriola et al. 2025).

In a block-causal network (models.block_denoiser) a clean block's keys and values at every layer depend only on
the blocks up to it, so they are computed once, when the block is finished, and every later block attends to
them: attention over [cache, current block] gives the same output as the network run on the whole prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class LayerCache:
    """One attention layer's stored keys and values, each (B, heads, P, D) with RoPE applied, or None (P = 0).

    `extend(key, value)` puts the stored ones in front of the current call's (B, heads, L, D); with
    store=True it also keeps the result, so that the call's positions become part of the cache.
    """

    def __init__(self, keys: Tensor | None = None, values: Tensor | None = None, store: bool = False) -> None:
        self.keys = keys
        self.values = values
        self.store = store

    def extend(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """(cat(stored keys, key), cat(stored values, value)) along the positions: (B, heads, P + L, D) each."""
        if self.keys is not None:
            key = torch.cat([self.keys, key], dim=2)
            value = torch.cat([self.values, value], dim=2)
        if self.store:
            self.keys, self.values = key, value
        return key, value


@dataclass(frozen=True)
class KeyValueCache:
    """The keys and values of every layer over the P clean positions 0 .. P-1 of a batch of B sequences.

    keys, values: one (B, heads, P, D) tensor per layer (RoPE applied at positions 0 .. P-1). tails: () or, for
    a network whose local mixing reads across a block edge (models.BlockDenoiser(mix_across_blocks=True)), one
    (B, W, H) tensor per mixing layer: that layer's input states at the last W positions (W its left window).
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    tails: tuple[Tensor, ...] = ()

    @property
    def length(self) -> int:
        """P, the number of cached positions."""
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        """B, the number of cached sequences."""
        return self.keys[0].shape[0]

    def layers(self, store: bool) -> list[LayerCache]:
        """One LayerCache per layer holding these keys and values; store=True lets a call append to them."""
        return [LayerCache(key, value, store) for key, value in zip(self.keys, self.values, strict=True)]

    @classmethod
    def from_layers(cls, layers: list[LayerCache]) -> KeyValueCache:
        """The cache the (stored-into) layer caches hold."""
        return cls(tuple(layer.keys for layer in layers), tuple(layer.values for layer in layers))

    def select(self, rows: Tensor) -> KeyValueCache:
        """The cache of the sequences `rows` (K,) long (or a (B,) bool): K sequences."""
        return KeyValueCache(tuple(k[rows] for k in self.keys), tuple(v[rows] for v in self.values),
                             tuple(t[rows] for t in self.tails))
