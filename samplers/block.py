"""Generation of any length, block after block, with any sampler inside a block (Arriola et al. 2025; MDLM).

`BlockSampler` draws from a block diffusion model p(x) = prod_b p(x^b | x^{<b}) (models.BlockDenoiser): blocks
of block_size tokens on the grid 0, S, 2S, ... of the whole text (a prompt ends anywhere: its last tokens are
kept fixed in the first block), each drawn by the inner sampler (Euler, Tweedie, first-hitting, ReMDM, top-p,
...) from a model callable of the current block that closes over the clean context before it:

- with cache=True (a `BlockModel`), the keys and values of each clean block are computed once, by
  `encode_context` when the next block starts, and each call of the inner sampler runs the network on the S
  positions of the block only (`denoise_block`); the samples equal those of cache=False with the same
  generator (the network outputs agree to round-off, and every draw is made on the same (B, S) shapes);
- with cache=False, each call runs the network on [context, block].
Past `max_length` positions the context slides: it keeps the last `keep` positions (whole blocks), re-encoded
from position 0 (the cache is dropped and rebuilt).

`SemiAutoregressiveSampler` lets a plain masked model (RADD, SEDD on the absorbing chain, MDLM) write past the
length it was trained on (MDLM's semi_ar): the inner sampler draws a first window of `window` tokens, then each
step keeps the last window - S tokens as a prefix and draws S new ones, the window sliding by S. No cache: a
bidirectional network's states of the prefix depend on the tokens being drawn.

Both stop a row at `stop_token` (a generated end-of-text id): the row leaves the batch, its length is recorded
(the stop token included) and its remaining positions are filled with stop_token.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ctmc.checks import check_int
from samplers.base import Sampler, SamplingResult, check_prefix
from samplers.models import ConcreteScore, Denoiser, Model, as_model


@runtime_checkable
class BlockModel(Protocol):
    """A block-causal denoiser with a key/value cache, e.g. models.BlockDenoiser (all outputs log-probabilities).

    encode_context(tokens (B, n) clean, n a multiple of block_size, cache or None) -> the cache extended by them;
    denoise_block(x (B, S) in [0, V], cache or None, where=None) -> (B, S, V) (or packed rows) of the block after
    the cached context; model(x, where=None) -> (B, L, V), the block-causal network on a whole window.
    The cache object has `select(rows)`, the cache of some rows.
    """

    block_size: int

    def encode_context(self, tokens: Tensor, cache: Any = None) -> Any: ...

    def denoise_block(self, x: Tensor, cache: Any = None, where: Tensor | None = None) -> Tensor: ...


@dataclass
class BlockSamplingResult(SamplingResult):
    """SamplingResult (tokens (B, length), nfe: denoiser row-evaluations / B, calls: forward passes, context
    encodings included) and lengths: (B,) long, the tokens of each row up to its stop token (included), or
    `length` for a row that did not stop."""

    lengths: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


@dataclass
class _Counts:
    row_evaluations: float = 0.0
    calls: int = 0


class _Blockwise:
    """The shared loop: prompt, steps that each append new tokens, stop token, result. Subclasses give `_step`."""

    def __init__(self, inner: Sampler, block_size: int) -> None:
        if not isinstance(inner, Sampler):
            raise TypeError(f"inner must be a samplers.Sampler (Euler, Tweedie, first-hitting, ...), got {inner!r}")
        self.inner = inner
        self.block_size = check_int("block_size", block_size, 1)
        self._inner = inner  # the sampler that runs the steps (BlockSampler: a per-batch cache)

    def generate(
        self,
        model: object,
        batch_size: int,
        length: int,
        *,
        prefix: Tensor | None = None,
        stop_token: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> BlockSamplingResult:
        """(batch_size, length) tokens after `prefix` ((P,) or (batch_size, P) clean ids, P <= length), drawn step
        by step; rows stop at `stop_token` (None: never). device: default the generator's, else CPU."""
        check_int("batch_size", batch_size, 1)
        check_int("length", length, 1)
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        clean = self.inner.process.rate_matrix.num_clean_states
        tokens = check_prefix(prefix, batch_size, length, clean, torch.device(device)).clone()
        valid = isinstance(stop_token, int) and not isinstance(stop_token, bool) and 0 <= stop_token < clean
        if stop_token is not None and not valid:
            raise ValueError(f"stop_token must be None or a token id in [0, {clean}), got {stop_token!r}")
        state = self._start(model)
        out = torch.full((batch_size, length), 0 if stop_token is None else stop_token, device=tokens.device)
        lengths = torch.full((batch_size,), length, dtype=torch.long, device=tokens.device)
        rows = torch.arange(batch_size, device=tokens.device)
        counts = _Counts()
        while tokens.shape[1] < length and rows.numel():
            start = tokens.shape[1]
            new = self._step(state, tokens, length, generator, counts)[:, : length - start]
            tokens = torch.cat([tokens, new], dim=1)
            if stop_token is None:
                continue
            hit = new == stop_token
            stopped = hit.any(1)
            if bool(stopped.any()):
                ends = start + hit.long().argmax(1) + 1  # the first stop of each row, included
                for index in stopped.nonzero().flatten().tolist():
                    end = int(ends[index])
                    out[rows[index], :end] = tokens[index, :end]
                    lengths[rows[index]] = end
                tokens, rows = tokens[~stopped], rows[~stopped]
                state = self._select(state, ~stopped)
        if rows.numel():
            out[rows] = tokens
        return BlockSamplingResult(out, counts.row_evaluations / batch_size, counts.calls, lengths=lengths)

    def sample(self, model: object, batch_size: int, length: int, **options: Any) -> Tensor:
        """`generate(...)`'s tokens: (B, length) long."""
        return self.generate(model, batch_size, length, **options).tokens

    def _draw(
        self, model: Model, rows: int, length: int, prompt: Tensor | None, generator: torch.Generator | None,
        device: torch.device, counts: _Counts,
    ) -> Tensor:
        """The inner sampler's (rows, length) tokens after `prompt` (None or (rows, r)), counted."""
        result = self._inner.generate(model, rows, length, generator=generator, device=device, prefix=prompt)
        counts.row_evaluations += result.nfe * rows
        counts.calls += result.calls
        return result.tokens

    def _start(self, model: object) -> Any:
        raise NotImplementedError

    def _select(self, state: Any, keep: Tensor) -> Any:
        return state

    def _step(
        self, state: Any, tokens: Tensor, length: int, generator: torch.Generator | None, counts: _Counts
    ) -> Tensor:
        """The next tokens (A, n) after tokens (A, T), T < length, for the A rows still running."""
        raise NotImplementedError


@dataclass
class _Context:
    """Where the context window starts in the text, and the cache of its first `encoded` positions."""

    model: Any
    cached: bool
    start: int = 0
    encoded: int = 0
    cache: Any = None


class BlockSampler(_Blockwise):
    """Block-by-block sampling of a block diffusion model (module docstring).

    inner: the sampler of one block (its process must be the absorbing chain the model was trained on);
    block_size: S, the model's block size; max_length: None (the text never slides) or the positions the model
    was trained for, >= S; keep: the positions kept when the context slides (a multiple of S in [0,
    max_length - S]; default the most that fit); cache: keep the clean blocks' keys and values (a `BlockModel`
    is needed), or run the network on [context, block] at every call. An inner per-row cache (cache="row") runs
    per batch inside a block (the block's callable holds every row's context); the samples are the same.
    """

    def __init__(
        self,
        inner: Sampler,
        block_size: int,
        *,
        max_length: int | None = None,
        keep: int | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(inner, block_size)
        if max_length is not None:
            check_int("max_length", max_length, block_size)
        room = None if max_length is None else (max_length - block_size) // block_size * block_size
        if keep is not None and (max_length is None or isinstance(keep, bool) or not isinstance(keep, int)
                                 or keep % block_size or not 0 <= keep <= room):
            raise ValueError(
                f"keep must be None or a multiple of block_size={block_size} in [0, max_length - block_size] "
                f"(the context kept when it slides; max_length={max_length}), got {keep!r}"
            )
        self.max_length = max_length
        self.keep = room if keep is None else keep
        self.cache = bool(cache)
        # A block's callable closes over every row's context, so it cannot answer for a subset of the rows, which
        # the inner sampler's per-row cache asks for; its per-batch cache calls whole batches (the same samples).
        if inner.cache == "row":
            self._inner = copy.copy(inner)
            self._inner.cache = "batch"

    def _start(self, model: object) -> _Context:
        if isinstance(model, BlockModel):
            if model.block_size != self.block_size:
                raise ValueError(
                    f"the model's block_size is {model.block_size} but the sampler's is {self.block_size}; build "
                    "BlockSampler with the model's block_size (its blocks are what it was trained to factorise)"
                )
            return _Context(model if self.cache else Denoiser(model, log=True, positions=True), self.cache)
        if self.cache:
            raise TypeError(
                f"cache=True needs a BlockModel (encode_context and denoise_block, e.g. models.BlockDenoiser), got "
                f"{type(model).__name__}; pass cache=False to run a window model on [context, block]"
            )
        return _Context(as_model(model), False)

    def _select(self, state: _Context, keep: Tensor) -> _Context:
        if state.cache is not None:
            state.cache = state.cache.select(keep)
        return state

    def _step(
        self, state: _Context, tokens: Tensor, length: int, generator: torch.Generator | None, counts: _Counts
    ) -> Tensor:
        size = self.block_size
        block_start = tokens.shape[1] // size * size
        if self.max_length is not None and block_start + size - state.start > self.max_length:
            state.start, state.encoded, state.cache = block_start - self.keep, 0, None  # slide
        context = tokens[:, state.start : block_start]
        if state.cached:
            if state.encoded < context.shape[1]:  # the blocks finished since the last step
                with torch.no_grad():
                    state.cache = state.model.encode_context(context[:, state.encoded :], state.cache)
                state.encoded = context.shape[1]
                counts.calls += 1
            cache = state.cache
            network = state.model

            def block_model(x: Tensor, where: Tensor | None = None) -> Tensor:
                return network.denoise_block(x, cache, where)

            model: Model = Denoiser(block_model, log=True, positions=True)
        else:
            model = _on_window(state.model, context)
        fixed = tokens[:, block_start:]  # the end of a prompt inside this block
        drawn = self._draw(model, tokens.shape[0], size, fixed if fixed.shape[1] else None, generator,
                           tokens.device, counts)
        return drawn[:, fixed.shape[1] :]

    def __repr__(self) -> str:
        return (
            f"BlockSampler({self.inner!r}, block_size={self.block_size}, max_length={self.max_length}, "
            f"keep={self.keep}, cache={self.cache})"
        )


class SemiAutoregressiveSampler(_Blockwise):
    """Semi-autoregressive sampling of a plain masked model past its length (module docstring).

    inner: the sampler of one window; block_size: S, the tokens drawn per step after the first window;
    window: W >= S, the length the model was trained on. model: a samplers.Denoiser / ConcreteScore (or a bare
    score callable) on (B, W) windows.
    """

    def __init__(self, inner: Sampler, block_size: int, window: int) -> None:
        super().__init__(inner, block_size)
        self.window = check_int("window", window, block_size)

    def _start(self, model: object) -> Model:
        return as_model(model)

    def _step(
        self, state: Model, tokens: Tensor, length: int, generator: torch.Generator | None, counts: _Counts
    ) -> Tensor:
        rows, written = tokens.shape
        if written < self.window:  # the first window, after the prompt
            size = min(self.window, length)
            drawn = self._draw(state, rows, size, tokens if written else None, generator, tokens.device, counts)
            return drawn[:, written:]
        context = tokens[:, written - (self.window - self.block_size) :]
        return self._draw(state, rows, self.window, context if context.shape[1] else None, generator, tokens.device,
                          counts)[:, context.shape[1] :]

    def __repr__(self) -> str:
        return f"SemiAutoregressiveSampler({self.inner!r}, block_size={self.block_size}, window={self.window})"


def _on_window(model: Model, context: Tensor) -> Model:
    """The model of a block x (B, S) that runs `model` on [context, x] and returns the block's rows only."""
    width = context.shape[1]

    def fn(x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        block = torch.ones_like(x, dtype=torch.bool) if where is None else where
        wide = torch.cat([torch.zeros_like(context, dtype=torch.bool), block], dim=1)
        rows = model(torch.cat([context, x], dim=1), total, wide)
        return rows if where is not None else rows.view(*x.shape, -1)

    if width == 0:
        return model
    kind = Denoiser if isinstance(model, Denoiser) else ConcreteScore
    return kind(fn, log=model.log, positions=True)
