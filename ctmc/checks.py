"""Argument checks at the boundaries of the toolkit: the one module every package validates its inputs with.

Each check raises a `TypeError` or `ValueError` whose message names the argument, the rule it broke and
how to fix it. Inner loops trust their inputs; only public entry points (constructors, public functions,
commands) call these. It lives in `ctmc`, the bottom package, so that every other package can use it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_int(name: str, value: object, minimum: int, fix: str = "") -> int:
    """Return `value` if it is an int (not a bool) >= minimum, else raise ValueError naming `name`.

    fix: what to do instead, appended to the message after "; " (e.g. "use 0 to load in the main process").
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}" + (f"; {fix}" if fix else ""))
    return value


def as_time(t: Tensor | float, name: str = "t", *, upper: float | None = None) -> Tensor:
    """Return `t` as a floating tensor after checking it is finite, >= 0 and (optionally) <= `upper`.

    Python numbers become float64 tensors (a Python float is a double); integer or boolean tensors are refused, as a
    time of dtype long silently truncates.
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float tensor or a Python float, got a bool")
    if isinstance(t, (int, float)):
        t = torch.tensor(float(t), dtype=torch.float64)
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a float tensor or a Python float, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"{name} must have a floating dtype (float32 or float64), got {t.dtype}; "
            f"convert it with {name}.double() or {name}.float()"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got a value that is nan or inf")
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be >= 0, got min {t.min().item():.6g}")
    if upper is not None and bool((t > upper).any()):
        raise ValueError(f"{name} must be <= {upper}, got max {t.max().item():.6g}; time runs from 0 to 1")
    return t


def check_states(x: Tensor, num_states: int, name: str = "x") -> Tensor:
    """Check that `x` is an integer tensor of state indices in [0, num_states)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of state indices, got {type(x).__name__}")
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must be an integer tensor of state indices, got {x.dtype}; use {name}.long()")
    if x.numel() and (bool((x < 0).any()) or bool((x >= num_states).any())):
        raise ValueError(
            f"{name} holds state ids outside [0, {num_states}): min {x.min().item()}, max {x.max().item()}"
        )
    return x.long()


def broadcast_time(x: Tensor, t: Tensor, name: str = "t") -> Tensor:
    """Broadcast `t` to `x.shape`; t must be a scalar or have x's number of dimensions.

    A per-sequence time of shape (B,) with x of shape (B, L) must be given as t[:, None].
    """
    try:
        shape = torch.broadcast_shapes(x.shape, t.shape)
    except RuntimeError:
        shape = None
    # A lower-dimensional t would align with x's trailing dimensions: (B,) against (B, L) silently means one
    # time per position when B == L. Only a scalar or a tensor with x's number of dimensions is accepted.
    if shape != x.shape or t.dim() not in (0, x.dim()):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to x's shape {tuple(x.shape)}; "
            f"for one time per sequence pass {name}[:, None]"
        )
    return t.to(x.device).expand(x.shape)


def check_distribution(p: Tensor, num_states: int, name: str = "p") -> Tensor:
    """Check that `p` is a float tensor whose last dimension has `num_states` entries."""
    if not isinstance(p, Tensor) or not p.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor of probabilities (..., {num_states})")
    if p.shape[-1:] != (num_states,):
        raise ValueError(f"{name} must have last dimension {num_states}, got shape {tuple(p.shape)}")
    return p
