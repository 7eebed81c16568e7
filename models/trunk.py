"""The transformer trunk shared by the SEDD score network, the RADD denoiser and the autoregressive model.

tokens (B, L) -> embedding -> num_layers TransformerBlocks with RoPE -> FinalNorm -> linear -> (B, L, S_out).
The blocks are adaLN-conditioned when cond_dim is given and plain pre-LN otherwise; the trunk itself
knows nothing of noise levels, only of an optional conditioning vector. With causal=True every attention
layer is causal (position l sees positions <= l), which makes output l a function of x[:, : l + 1] only.
With `where` ((B, L) bool) the final norm and the projection run only on the selected positions and the output
is packed, (where.sum(), S_out) in the row-major order of where.nonzero() (docs/models.md, Packed outputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctmc.checks import check_int
from models.block import FinalNorm, TransformerBlock
from models.local_mixing import LocalMixing
from models.rotary import rotary_rotation

if TYPE_CHECKING:
    from models.kv_cache import LayerCache


class OutputRows(NamedTuple):
    """logits: (R, S) output rows; batch_index, tokens: (R,) long, the sequence and the input token of each row
    (tokens: (R, num_states), the input weights, for a float input)."""

    logits: Tensor
    batch_index: Tensor
    tokens: Tensor


def check_where(where: Tensor | None, shape: torch.Size) -> None:
    """Raise TypeError/ValueError naming `where` unless it is None or a bool tensor of shape `shape` = (B, L)."""
    if where is None:
        return
    if not isinstance(where, Tensor) or where.dtype != torch.bool:
        kind = where.dtype if isinstance(where, Tensor) else type(where).__name__
        raise TypeError(f"where must be None or a (B, L) bool tensor of the positions to output, got {kind}")
    if where.shape != shape:
        raise ValueError(f"where must have the shape of x, {tuple(shape)}, got {tuple(where.shape)}")


class TransformerTrunk(nn.Module):
    """Token embedding over num_states input states, RoPE transformer, projection to output_size logits.

    The embedding is uniform in +-1/sqrt(hidden_size) (SEDD's init); the output projection is zero at
    init unless tie_weights, in which case its weight is the first output_size rows of the embedding.
    local_mixing = k > 0 puts a models.local_mixing.LocalMixing layer (a residual depthwise convolution of
    width k, causal when the trunk is) on the embeddings and another before every block (num_layers + 1 in all);
    0 (the default) leaves the trunk a plain transformer.
    """

    def __init__(
        self,
        num_states: int,
        output_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        cond_dim: int | None,
        max_length: int,
        dropout: float,
        tie_weights: bool,
        mlp_ratio: int,
        causal: bool = False,
        local_mixing: int = 0,
    ) -> None:
        super().__init__()
        for name, value in [
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("max_length", max_length),
            ("mlp_ratio", mlp_ratio),
        ]:
            check_int(name, value, 1)
        if cond_dim is not None:
            check_int("cond_dim", cond_dim, 1)
        if hidden_size % num_heads or (hidden_size // num_heads) % 2:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be num_heads ({num_heads}) times an even head size "
                "(RoPE rotates pairs of coordinates); choose e.g. hidden_size = num_heads * 64"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        check_int("local_mixing", local_mixing, 0, "it is a kernel size; 0 disables it")
        if tie_weights and output_size > num_states:
            raise ValueError(f"output_size ({output_size}) cannot exceed num_states ({num_states}) with tie_weights")

        self.num_states = num_states
        self.causal = causal
        self.output_size = output_size
        self.max_length = max_length
        self.head_dim = hidden_size // num_heads

        self.embedding = nn.Embedding(num_states, hidden_size)
        bound = 1.0 / math.sqrt(hidden_size)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, cond_dim, mlp_ratio, dropout, causal) for _ in range(num_layers)
        )
        # local_mixing = k > 0: LocalMixing on the embeddings (mixing[0]) and before block i (mixing[i + 1]).
        self.mixing = nn.ModuleList(
            LocalMixing(hidden_size, local_mixing, causal) for _ in range(num_layers + 1 if local_mixing else 0)
        )
        self.final_norm = FinalNorm(hidden_size, cond_dim)
        if tie_weights:
            self.register_parameter("output_weight", None)
        else:
            self.output_weight = nn.Parameter(torch.zeros(output_size, hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(output_size))

    def check_tokens(
        self, x: Tensor, name: str = "x", limit: int | None = None, allow_empty: bool = True, limit_note: str = ""
    ) -> None:
        """Raise TypeError/ValueError naming `name` unless x is (B, L) long in [0, limit) (default num_states),
        L <= max_length, and L >= 1 unless allow_empty. limit_note is appended to the range message.

        The value-range check needs a device sync, so it is skipped while torch.compile traces.
        """
        limit = self.num_states if limit is None else limit
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(x).__name__}")
        if x.dtype != torch.long:
            raise TypeError(f"{name} must have dtype torch.long (int64), got {x.dtype}; pass {name}.long()")
        if x.dim() != 2:
            raise ValueError(
                f"{name} must have shape (batch, length), got {tuple(x.shape)}; add a batch axis with {name}[None]"
            )
        if x.shape[1] == 0 and not allow_empty:
            raise ValueError(f"{name} must hold at least one token per row, got length 0")
        if x.shape[1] > self.max_length:
            raise ValueError(
                f"{name} has length {x.shape[1]} > max_length={self.max_length} (the model's context); "
                f"build the model with a larger max_length or split the sequence"
            )
        if not torch.compiler.is_compiling() and x.numel() and bool(((x < 0) | (x >= limit)).any()):
            raise ValueError(
                f"{name} must hold token ids in [0, {limit}){limit_note}, "
                f"got values in [{int(x.min())}, {int(x.max())}]"
            )

    def embed(self, x: Tensor) -> Tensor:
        """Token embeddings (B, L, H): x (B, L) long ids, or (B, L, num_states) float weights over the states
        (a one-hot, or any mixture: the embedding is then weights @ table, differentiable in the weights)."""
        if x.is_floating_point():
            return x.to(self.embedding.weight.dtype) @ self.embedding.weight
        return self.embedding(x)

    def hidden_states(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        shift: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
        caches: Sequence[LayerCache] | None = None,
        segment: int | None = None,
        mixer: Callable[[int, LocalMixing, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """The blocks' output before the final norm: x (B, L) long (or (B, L, num_states) float, `embed`);
        cond (B, cond_dim) or None; shift (B, H) or None, a vector added to every token embedding of its sequence
        (a class label's embedding). Returns (B, L, H).

        Every position is computed, whatever the caller projects afterwards: attention reads all of them.
        The keywords serve the block diffusion network (models.block_denoiser) and keep the plain trunk when
        left out: positions (L,) long, the RoPE positions (default 0 .. L-1); mask (L, P + L) bool, the
        attention mask of every layer; caches, one models.kv_cache.LayerCache per layer (num_layers of them);
        segment, the run length within which local mixing stays (models.local_mixing.LocalMixing); mixer,
        mixer(i, layer, h) -> h in place of layer(h, segment) for the i-th mixing layer (0: on the embeddings,
        i: before block i - 1), the block diffusion network's block-causal mixing.
        """
        h = self.embed(x)  # (B, L, H)
        if shift is not None:
            h = h + shift[:, None, :].to(h.dtype)
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)
        # float64 positions give float64 tables: a float64 model (reference tests) rotates in float64 throughout.
        if self.embedding.weight.dtype == torch.float64:
            positions = positions.to(torch.float64)
        rotation = rotary_rotation(positions, self.head_dim)
        if self.mixing:
            h = self.mixing[0](h, segment) if mixer is None else mixer(0, self.mixing[0], h)
        for index, block in enumerate(self.blocks):
            if self.mixing:
                layer = self.mixing[index + 1]
                h = layer(h, segment) if mixer is None else mixer(index + 1, layer, h)
            h = block(h, rotation, cond, mask, None if caches is None else caches[index])
        return h

    def output_rows(
        self, x: Tensor, cond: Tensor | None = None, where: Tensor | None = None, shift: Tensor | None = None
    ) -> OutputRows:
        """The output projection as a 2-D tensor of rows, one per position that is asked for.

        x: (B, L) long (checked by the caller with check_tokens) or (B, L, num_states) float weights (`embed`);
        cond: (B, cond_dim) or None; where: None (all B L positions, row b L + l) or a (B, L) bool (checked with
        check_where): the rows of where.nonzero(), in row-major order; shift: as in `hidden_states`. Returns
        `OutputRows`: logits (R, output_size) in float32 (float64 if the parameters are) and the batch index and
        token id (R,) of each row. Only the final norm and the projection run per row, so a packed call costs
        R / (B L) of the head; callers may modify the logits in place (their autograd node, the projection, does
        not save its output).
        """
        return self.head(self.hidden_states(x, cond, shift), x, cond, where)

    def head(self, h: Tensor, x: Tensor, cond: Tensor | None = None, where: Tensor | None = None) -> OutputRows:
        """`output_rows` from hidden states h (B, L, H) (`hidden_states`) of the tokens x (B, L) (or their weights
        (B, L, num_states)): the final norm and the projection at every position (where None) or at the rows of
        where.nonzero() only."""
        batch, length = x.shape[:2]
        if where is None:
            rows = h.reshape(batch * length, -1)
            batch_index = torch.arange(batch, device=x.device).repeat_interleave(length)
            tokens = x.reshape(batch * length, *x.shape[2:])
        else:
            rows, batch_index, tokens = h[where], where.nonzero()[:, 0], x[where]
        rows = self.final_norm(rows, cond, batch_index)
        tied = self.output_weight is None
        weight = self.embedding.weight[: self.output_size] if tied else self.output_weight
        logits = F.linear(rows, weight, self.output_bias)
        return OutputRows(logits.to(torch.promote_types(logits.dtype, torch.float32)), batch_index, tokens)

    def forward(
        self, x: Tensor, cond: Tensor | None = None, where: Tensor | None = None, shift: Tensor | None = None
    ) -> Tensor:
        """x: (B, L) long in [0, num_states) (checked by the caller with check_tokens), or (B, L, num_states)
        float weights (`embed`); cond: (B, cond_dim) or None; where: None or (B, L) bool (`output_rows`); shift:
        (B, H) or None (`hidden_states`). Returns (B, L, output_size), or the packed (where.sum(), output_size)
        rows of where.nonzero(), in float32 (float64 if the parameters are float64).
        """
        logits = self.output_rows(x, cond, where, shift).logits
        return logits if where is not None else logits.view(*x.shape[:2], -1)
