"""The block diffusion denoiser (BD3-LM, Arriola et al. 2025): a masked denoiser that is causal over blocks.

A sequence of L tokens is cut into blocks x^0, x^1, ... of block_size tokens, and the model is

    log p_theta(x) = sum_b log p_theta(x^b | x^{<b}),

each block's conditional a masked diffusion model given the clean blocks before it. The network returns
log p_theta(x0^b_i = y | x_t^b, x0^{<b}): the RADD denoiser (models.radd) of block b, with the clean blocks
before it as context. Block size 1 is an autoregressive model, block size L the RADD denoiser itself (same
weights, same output; no parameter is added, so checkpoints move between the two).

Attention masks (True: may attend). Plain form (sampling, one sequence x): position q sees position k iff
block(k) <= block(q), block(p) = p // block_size. Training form (Arriola et al. 2025, the vectorised pass): the
noisy x_t and the clean x0 side by side, 2L positions, both halves at RoPE positions 0 .. L-1, with

    M_BD  (block diagonal):       x_t block b sees x_t block b,
    M_OBC (offset block-causal):  x_t block b sees x0 blocks < b,
    M_BC  (block-causal):         x0 block b sees x0 blocks <= b,

so that the output at x_t block b is the plain form's output on [x0^{<b}, x_t^b], for every b at once.
Local mixing (models.local_mixing) runs within each block, in both halves, so it never crosses a block edge
either; the factorisation and the key/value cache (models.kv_cache) stay exact. With mix_across_blocks=True it is
block-causal instead: position l mixes its neighbours m with block(m) <= block(l), so a block's first positions
also read the last tokens of the block before it (in the training form, x_t block b reads them from x0, the
clean prefix; the cache keeps each mixing layer's last input states). At block size 1 this gives the mask the
previous token directly, as an autoregressive model's residual stream holds it (a mask reads its neighbours
otherwise only through attention: docs/experiments.md, local token mixing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from ctmc.checks import check_int
from models.kv_cache import KeyValueCache, LayerCache
from models.local_mixing import LocalMixing
from models.radd import RADDDenoiser
from models.trunk import check_where


def block_causal_mask(query_positions: Tensor, key_positions: Tensor, block_size: int) -> Tensor:
    """M[q, k] = block(key_positions[k]) <= block(query_positions[q]), block(p) = p // block_size.

    query_positions: (Lq,) long; key_positions: (Lk,) long. Returns (Lq, Lk) bool.
    """
    return (key_positions[None, :] // block_size) <= (query_positions[:, None] // block_size)


def block_diffusion_mask(length: int, block_size: int, device: torch.device | str | None = None) -> Tensor:
    """The (2L, 2L) bool mask of the training form [x_t, x0] (module docstring): M_BD | M_OBC | M_BC.

    Index i < L is x_t position i, index L + i is x0 position i; L must be a multiple of block_size.
    """
    index = torch.arange(2 * length, device=device)
    clean = index >= length
    block = (index % length) // block_size
    q_block, k_block = block[:, None], block[None, :]
    q_clean, k_clean = clean[:, None], clean[None, :]
    diagonal = (q_block == k_block) & (q_clean == k_clean)
    offset_causal = ~q_clean & k_clean & (k_block < q_block)
    causal = q_clean & k_clean & (k_block <= q_block)
    return diagonal | offset_causal | causal


class BlockDenoiser(RADDDenoiser):
    """RADD's network with block-causal attention: tokens (B, L) in [0, V] (V is the mask) -> log-probabilities
    (B, L, V) of the clean token of each position given its block and the clean blocks before it.

    The constructor takes RADDDenoiser's arguments, block_size (>= 1, <= max_length): the block length, and
    mix_across_blocks (default False: local mixing within each block; True: block-causal, module docstring).
    `forward(x)` is the plain form, `forward(x_t, clean=x0)` the training form (module docstring); the
    sampling path is `encode_context` (keys and values of finished clean blocks) and `denoise_block`.
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
        local_mixing: int = 0,
        *,
        block_size: int,
        mix_across_blocks: bool = False,
    ) -> None:
        super().__init__(
            vocab_size, hidden_size, num_layers, num_heads, max_length, dropout, tie_weights, mlp_ratio, local_mixing
        )
        check_int("block_size", block_size, 1, "it counts the tokens per block")
        if block_size > max_length:
            raise ValueError(f"block_size must be <= max_length={max_length} (a block must fit), got {block_size}")
        self.block_size = block_size
        self.mix_across_blocks = bool(mix_across_blocks)

    def forward(
        self, x: Tensor, sigma: Tensor | None = None, where: Tensor | None = None, clean: Tensor | None = None
    ) -> Tensor:
        """log p_theta(x0_l = y | ...): x (B, L) long in [0, V]; sigma is accepted and ignored (a RADD call
        signature); where: None or a (B, L) bool of the positions to output (packed rows, as RADDDenoiser).

        clean None (plain form): block-causal attention over x itself; output l conditions on the blocks of x up
        to l's (the last block may be shorter). clean (B, L) long in [0, V), L a multiple of block_size or at most
        block_size (training form): x is x_t and the output at block b conditions on x_t^b and clean^{<b}, for
        every b in one pass over 2L positions (one block: RADD's pass over x_t alone, clean unread).
        Returns (B, L, V) (or the (where.sum(), V) packed rows), logsumexp over y equal to 0.
        """
        del sigma  # time-independent by construction
        self.trunk.check_tokens(x)
        check_where(where, x.shape)
        length = x.shape[1]
        single_block = length <= self.block_size  # then both forms are RADD's unmasked attention on x
        if clean is None or single_block:
            if clean is not None:
                self._check_clean(clean, x)
            positions = torch.arange(length, device=x.device)
            mask = None if single_block else block_causal_mask(positions, positions, self.block_size)
            mixer = None if single_block else self._mixer()
            h = self.trunk.hidden_states(x, mask=mask, segment=self.block_size, mixer=mixer)
        else:
            self._check_clean(clean, x)
            positions = torch.arange(length, device=x.device).repeat(2)
            mask = block_diffusion_mask(length, self.block_size, x.device)
            pair = torch.cat([x, clean.to(x.device)], dim=1)  # (B, 2L): x_t, then x0
            h = self.trunk.hidden_states(pair, positions=positions, mask=mask, segment=self.block_size,
                                         mixer=self._mixer(pair=True))[:, :length]
        logits = self.trunk.head(h, x, None, where).logits
        log_probs = torch.log_softmax(logits, dim=-1)
        return log_probs if where is not None else log_probs.view(*x.shape, -1)

    def _check_clean(self, clean: Tensor, x: Tensor) -> None:
        self.trunk.check_tokens(clean, "clean", limit=self.vocab_size, limit_note=" (clean tokens, no mask)")
        if clean.shape != x.shape:
            raise ValueError(f"clean must have the shape of x, {tuple(x.shape)}, got {tuple(clean.shape)}")
        if x.shape[1] % self.block_size and x.shape[1] > self.block_size:
            raise ValueError(
                f"the sequence length {x.shape[1]} must be a multiple of block_size={self.block_size} in the "
                "training form (clean=); choose a block_size that divides the sequence length"
            )

    def encode_context(self, tokens: Tensor, cache: KeyValueCache | None = None) -> KeyValueCache:
        """The cache extended by the clean blocks `tokens` (B, n) long in [0, V), n a multiple of block_size,
        placed at positions P .. P + n - 1 after the P cached ones (P = 0 without a cache; P + n <= max_length).

        Each new block attends to the cache and to the new blocks up to it (the plain form's mask). Returns a
        new KeyValueCache of P + n positions; the given one is left as it was.
        """
        self.trunk.check_tokens(tokens, "tokens", limit=self.vocab_size, limit_note=" (clean tokens, no mask)")
        start = self._cache_length(cache, tokens, "tokens")
        length = tokens.shape[1]
        if length == 0 or length % self.block_size:
            raise ValueError(
                f"tokens must hold whole blocks: a positive multiple of block_size={self.block_size} tokens per "
                f"row, got {length}"
            )
        if cache is None:
            layers = [LayerCache(store=True) for _ in self.trunk.blocks]
        else:
            layers = cache.layers(store=True)
        positions = torch.arange(start, start + length, device=tokens.device)
        keys = torch.arange(start + length, device=tokens.device)
        mask = None if length <= self.block_size else block_causal_mask(positions, keys, self.block_size)
        tails: list[Tensor] = []
        mixer = self._mixer(tails=None if cache is None else cache.tails, store=tails)
        self.trunk.hidden_states(tokens, positions=positions, mask=mask, caches=layers, segment=self.block_size,
                                 mixer=mixer)
        return replace(KeyValueCache.from_layers(layers), tails=tuple(tails))

    def denoise_block(self, x: Tensor, cache: KeyValueCache | None = None, where: Tensor | None = None) -> Tensor:
        """log p_theta(x0_l = y | x, cached context): x (B, n) long in [0, V], 1 <= n <= block_size, the block
        at positions P .. P + n - 1 after the cache's P (a multiple of block_size); where: None or (B, n) bool.

        Equal to forward(cat(context, x))[:, P:] with the context whose keys and values the cache holds
        (to round-off). Returns (B, n, V), or the packed (where.sum(), V) rows of where.nonzero().
        """
        self.trunk.check_tokens(x, allow_empty=False)
        check_where(where, x.shape)
        start = self._cache_length(cache, x, "x")
        if x.shape[1] > self.block_size or start % self.block_size:
            raise ValueError(
                f"x must be one block (at most block_size={self.block_size} tokens) after a cache of whole blocks, "
                f"got {x.shape[1]} tokens after {start} cached positions"
            )
        layers = cache.layers(store=False) if cache is not None else None
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        mixer = self._mixer(tails=None if cache is None else cache.tails)
        h = self.trunk.hidden_states(x, positions=positions, caches=layers, segment=self.block_size, mixer=mixer)
        log_probs = torch.log_softmax(self.trunk.head(h, x, None, where).logits, dim=-1)
        return log_probs if where is not None else log_probs.view(*x.shape, -1)

    def _mixer(
        self, pair: bool = False, tails: tuple[Tensor, ...] | None = None, store: list[Tensor] | None = None
    ) -> Callable[[int, LocalMixing, Tensor], Tensor] | None:
        """The trunk's mixer (models.trunk.TransformerTrunk.hidden_states) for block-causal mixing, None without
        mix_across_blocks (mixing within each block). Each run of block_size positions reads, in place of its left
        zero padding, the W positions before it of the clean stream: h itself (plain form, clean blocks) or the
        x0 half of the pair (training form: x_t block b and x0 block b read x0 just before block b), preceded by
        `tails` (a cache's last W input states of every mixing layer; zeros without). `store` collects each
        layer's new last W input states (encode_context)."""
        if not self.mix_across_blocks:
            return None
        size = self.block_size

        def mix(index: int, layer: LocalMixing, h: Tensor) -> Tensor:
            width = layer.padding[0]
            clean = h[:, h.shape[1] // 2 :] if pair else h
            before = tails[index].to(clean.dtype) if tails else clean.new_zeros(clean.shape[0], width, clean.shape[2])
            runs = -(-clean.shape[1] // size)
            if runs == 1 and store is None:  # one block after the context (denoise_block): it reads the tail only
                return layer(h, size, before[:, None])
            stream = torch.cat([before, clean], dim=1)  # (B, W + L, H)
            index_grid = (torch.arange(runs, device=h.device) * size)[:, None] + torch.arange(width, device=h.device)
            left = stream[:, index_grid]  # (B, runs, W, H): the W clean states before each run
            if pair:
                left = torch.cat([left, left], dim=1)  # x_t block b and x0 block b read the same clean states
            if store is not None:
                store.append(stream[:, stream.shape[1] - width :])
            return layer(h, size, left)

        return mix

    def _cache_length(self, cache: KeyValueCache | None, x: Tensor, name: str) -> int:
        """P, after checking that the cache has x's batch size and that P + x's length fits max_length."""
        if cache is None:
            start = 0
        elif not isinstance(cache, KeyValueCache):
            raise TypeError(f"cache must be None or a models.kv_cache.KeyValueCache, got {type(cache).__name__}")
        else:
            start = cache.length
            if cache.batch_size != x.shape[0]:
                raise ValueError(
                    f"the cache holds {cache.batch_size} sequences but {name} has {x.shape[0]} rows; select the "
                    "cache's rows with cache.select(rows)"
                )
        if start + x.shape[1] > self.max_length:
            raise ValueError(
                f"{start} cached + {x.shape[1]} new positions exceed max_length={self.max_length}; slide the "
                "context (start a new cache from the last blocks)"
            )
        return start

