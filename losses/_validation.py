"""Boundary checks for the losses: shapes, token ranges, times and network outputs.

Each check raises a `TypeError` (wrong kind of object or dtype) or a `ValueError` (wrong shape or value) whose
message names the argument, the rule and the fix. They cost a few reductions over the inputs, never a copy
of a (B, L, V) tensor; the loss bodies trust what passed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_tokens(x: Tensor, upper: int, name: str, *, what: str = "state ids") -> Tensor:
    """x: (B, L) integer ids in [0, upper). Returns x as long."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of {what}, got {type(x).__name__}")
    if x.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name} must be an integer tensor of {what}, got {x.dtype}; use {name}.long()")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (B, L), got {tuple(x.shape)}; add a batch dimension with [None]")
    if x.numel() and (bool((x < 0).any()) or bool((x >= upper).any())):
        raise ValueError(
            f"{name} holds {what} outside [0, {upper}): min {x.min().item()}, max {x.max().item()}"
        )
    return x.long()


def check_pair(x0: Tensor, x_t: Tensor, clean_states: int, num_states: int) -> tuple[Tensor, Tensor]:
    """x0: (B, L) clean ids in [0, clean_states); x_t: (B, L) noisy ids in [0, num_states), same shape."""
    what = "clean token ids (the mask is not a data token)" if clean_states < num_states else "state ids"
    x0 = check_tokens(x0, clean_states, "x0", what=what)
    x_t = check_tokens(x_t, num_states, "x_t")
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 and x_t must have the same shape (B, L), got {tuple(x0.shape)} and {tuple(x_t.shape)}")
    return x0, x_t


def check_time(t: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """t: (B,) floating diffusion times in (0, 1], one per sequence."""
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a float tensor of shape (B,), got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"t must have a floating dtype, got {t.dtype}; use t.float()")
    if t.shape != (batch_size,):
        raise ValueError(f"t must have shape (B,) = ({batch_size},), one time per sequence, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()) or bool((t > 1).any()):
        raise ValueError(
            f"t must lie in (0, 1] (0 is clean data, where the loss weight is infinite), got min "
            f"{t.min().item():.6g}, max {t.max().item():.6g}; draw times with loss.sample_time"
        )
    return t.to(device)


def check_output(output: Tensor, leading: tuple[int, ...], width: int, kind: str, packed: bool = False) -> Tensor:
    """output: leading + (width,) floating. leading is (B, L), or (N,) for the packed rows at the loss's
    output_positions (packed=True). The values are checked by `check_output_values`, which a loss calls only
    when its result is not finite (a full pass over the output saved on every good call)."""
    if not isinstance(output, Tensor) or not output.is_floating_point():
        raise TypeError(f"output must be a floating tensor of {kind}, got {type(output).__name__}")
    expected = (*leading, width)
    if output.shape != expected:
        layout = "(N, n) rows at loss.output_positions(x_t)" if packed else "(B, L, n)"
        raise ValueError(f"output must have shape {layout} = {expected} ({kind}), got {tuple(output.shape)}")
    return output


def check_output_values(output: Tensor, kind: str) -> None:
    """No NaN and no +inf in output (-inf, a log of 0, is allowed).

    One max over the tensor detects both (NaN propagates through max, +inf is the max), without the (B, L, n)
    float64 copy that a float64 sum would allocate.
    """
    largest = float(output.detach().amax()) if output.numel() else 0.0
    if math.isnan(largest) or largest == math.inf:
        raise ValueError(
            f"output ({kind}) contains NaN or +inf; the network diverged or a log was taken of a negative "
            "number. Check the learning rate and the network's last layer."
        )


SPOT_CHECK_ROWS = 64  # sequences whose first row check_log_probs examines


def check_log_probs(output: Tensor) -> None:
    """Spot-check that (B, L, V) `output` holds log-probabilities: row 0 of the first SPOT_CHECK_ROWS sequences
    must logsumexp to 0.

    O(V) work per checked row (never a (B, L, V) float64 copy, also for packed rows viewed as (N, 1, V));
    catches raw logits passed where log_softmax(logits) was meant.
    """
    norm = torch.logsumexp(output[:SPOT_CHECK_ROWS, 0, :].double(), dim=-1)
    if bool((norm.abs() > 1e-3).any()):
        raise ValueError(
            "output must hold log-probabilities over the clean tokens (each row logsumexp = 0), but row 0 "
            f"has logsumexp {norm.abs().max().item():.4g}; apply torch.log_softmax(logits, dim=-1)"
        )


def check_finite_loss(loss: Tensor, hint: str) -> Tensor:
    """Raise instead of returning a loss that is infinite or NaN (one reduction over (B,))."""
    if not bool(torch.isfinite(loss).all()):
        raise ValueError(f"the loss is not finite: {hint}")
    return loss
