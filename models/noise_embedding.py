"""Embedding of the total noise level sigma-bar(t) into the adaLN conditioning vector (as SEDD does)."""

import math

import torch
from torch import Tensor, nn

FREQUENCY_EMBEDDING_SIZE = 256
MAX_PERIOD = 10_000.0


def check_total_noise(sigma: Tensor, batch_size: int, positive: bool = False) -> None:
    """Raise a TypeError/ValueError naming `sigma` unless it is a (batch_size,) finite float tensor of total noise
    levels sigma-bar, >= 0 (> 0 with positive=True: the absorbing parameterisation's log(e^sigma - 1) diverges at 0).
    """
    if not isinstance(sigma, Tensor):
        raise TypeError(
            f"sigma must be a torch.Tensor of shape (batch,), got {type(sigma).__name__}; "
            "pass torch.full((batch,), value)"
        )
    if not sigma.is_floating_point():
        raise TypeError(f"sigma must be a floating-point tensor, got {sigma.dtype}; pass sigma.float()")
    if sigma.shape != (batch_size,):
        raise ValueError(
            f"sigma must have shape (batch,) = ({batch_size},), one total noise level per sequence, got "
            f"{tuple(sigma.shape)}; use sigma.reshape(-1) or sigma.expand({batch_size})"
        )
    if torch.compiler.is_compiling():
        return
    if positive:
        if not bool(torch.isfinite(sigma).all() & (sigma > 0).all()):
            raise ValueError(
                "sigma must be finite and > 0 with absorbing_parameterization (log(e^sigma - 1) "
                f"diverges at 0), got min {float(sigma.min())}; sample t away from 0"
            )
    elif not bool(torch.isfinite(sigma).all() & (sigma >= 0).all()):
        raise ValueError(f"sigma must be finite and >= 0, got min {float(sigma.min())}")


def sinusoidal_embedding(sigma: Tensor, dim: int, max_period: float = MAX_PERIOD) -> Tensor:
    """[cos(sigma w_0), ..., cos(sigma w_{k-1}), sin(sigma w_0), ..., sin(sigma w_{k-1})] (padded with a zero
    column when dim is odd), with k = dim // 2 and w_i = max_period^(-i/k) (the DiT/GLIDE timestep embedding).

    sigma: (B,) float. Returns (B, dim) in float64 if sigma is float64, else float32.
    """
    half = dim // 2
    dtype = torch.float64 if sigma.dtype == torch.float64 else torch.float32
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=sigma.device) / half)
    arguments = sigma.to(dtype)[:, None] * frequencies[None, :]  # (B, half)
    embedding = torch.cat([torch.cos(arguments), torch.sin(arguments)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class NoiseEmbedding(nn.Module):
    """c = SiLU(W2 SiLU(W1 sinusoidal_embedding(sigma) + b1) + b2), the conditioning fed to every adaLN."""

    def __init__(self, cond_dim: int, frequency_size: int = FREQUENCY_EMBEDDING_SIZE) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, cond_dim),
            nn.SiLU(),
            nn.Linear(cond_dim, cond_dim),
            nn.SiLU(),
        )

    def forward(self, sigma: Tensor) -> Tensor:
        """sigma: (B,) float. Returns (B, cond_dim) in the dtype of the parameters (or autocast's)."""
        frequency_features = sinusoidal_embedding(sigma, self.frequency_size)
        return self.mlp(frequency_features.to(self.mlp[0].weight.dtype))
