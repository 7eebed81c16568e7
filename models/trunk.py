"""The transformer trunk shared by the SEDD score network, the RADD denoiser and the autoregressive model.

tokens (B, L) -> embedding -> num_layers TransformerBlocks with RoPE -> FinalNorm -> linear -> (B, L, S_out).
The blocks are adaLN-conditioned when cond_dim is given and plain pre-LN otherwise; the trunk itself
knows nothing of noise levels, only of an optional conditioning vector. With causal=True every attention
layer is causal (position l sees positions <= l), which makes output l a function of x[:, : l + 1] only.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.block import FinalNorm, TransformerBlock
from models.local_mixing import LocalMixing
from models.rotary import rotary_rotation


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class TransformerTrunk(nn.Module):
    """Token embedding over num_states input states, RoPE transformer, projection to output_size logits.

    The embedding is uniform in +-1/sqrt(hidden_size) (SEDD's init); the output projection is zero at
    init unless tie_weights, in which case its weight is the first output_size rows of the embedding.
    local_mixing = k > 0 puts a models.local_mixing.LocalMixing layer (a residual depthwise convolution of
    width k, causal when the trunk is) before every block; 0 (the default) leaves the trunk a plain transformer.
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
            _check_positive_int(name, value)
        if cond_dim is not None:
            _check_positive_int("cond_dim", cond_dim)
        if hidden_size % num_heads or (hidden_size // num_heads) % 2:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be num_heads ({num_heads}) times an even head size "
                "(RoPE rotates pairs of coordinates); choose e.g. hidden_size = num_heads * 64"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if isinstance(local_mixing, bool) or not isinstance(local_mixing, int) or local_mixing < 0:
            raise ValueError(f"local_mixing must be an int >= 0 (a kernel size; 0 disables it), got {local_mixing!r}")
        if output_size > num_states:
            raise ValueError(f"output_size ({output_size}) cannot exceed num_states ({num_states})")

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
        # local_mixing = k > 0: a LocalMixing layer after the embedding and one before each later block.
        self.mixing = nn.ModuleList(
            LocalMixing(hidden_size, local_mixing, causal) for _ in range(num_layers if local_mixing else 0)
        )
        self.final_norm = FinalNorm(hidden_size, cond_dim)
        if tie_weights:
            self.register_parameter("output_weight", None)
        else:
            self.output_weight = nn.Parameter(torch.zeros(output_size, hidden_size))
        self.output_bias = nn.Parameter(torch.zeros(output_size))

    def check_tokens(self, x: Tensor) -> None:
        """Raise TypeError/ValueError naming `x` unless x is (B, L) long in [0, num_states), L <= max_length.

        The value-range check needs a device sync, so it is skipped while torch.compile traces.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of token ids, got {type(x).__name__}")
        if x.dtype != torch.long:
            raise TypeError(f"x must have dtype torch.long (int64), got {x.dtype}; pass x.long()")
        if x.dim() != 2:
            raise ValueError(f"x must have shape (batch, length), got {tuple(x.shape)}; add a batch axis with x[None]")
        if x.shape[1] > self.max_length:
            raise ValueError(
                f"x has length {x.shape[1]} > max_length={self.max_length}; "
                "build the model with a larger max_length or split the sequence"
            )
        if not torch.compiler.is_compiling() and x.numel() and bool(((x < 0) | (x >= self.num_states)).any()):
            raise ValueError(
                f"x must hold token ids in [0, {self.num_states}), got values in [{int(x.min())}, {int(x.max())}]"
            )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, L) long in [0, num_states) (checked by the caller with check_tokens); cond: (B, cond_dim)
        or None. Returns (B, L, output_size) in float32 (float64 if the parameters are float64).
        """
        h = self.embedding(x)  # (B, L, H)
        rotation = rotary_rotation(torch.arange(x.shape[1], device=x.device), self.head_dim)
        for index, block in enumerate(self.blocks):
            if index < len(self.mixing):
                h = self.mixing[index](h)
            h = block(h, rotation, cond)
        h = self.final_norm(h, cond)
        tied = self.output_weight is None
        weight = self.embedding.weight[: self.output_size] if tied else self.output_weight
        logits = F.linear(h, weight, self.output_bias)
        return logits.to(torch.promote_types(logits.dtype, torch.float32))
