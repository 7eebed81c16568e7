"""Exponential moving average of a network's weights (Polyak averaging, as in SEDD and MDLM).

After every optimiser step, theta_ema <- decay * theta_ema + (1 - decay) * theta. The average is a frozen
copy of the network, so that it is saved in checkpoints with the rest of the module's state and resume is
exact, and so that validation and sampling can call it like the network itself.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(network: nn.Module) -> nn.Module:
    """A deep copy of `network` with requires_grad=False everywhere, in eval mode: the EMA's storage."""
    average = copy.deepcopy(network)
    average.requires_grad_(False)
    return average.eval()


@torch.no_grad()
def update_average(average: nn.Module, network: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, for every parameter; buffers are copied.

    average, network: modules with the same parameter and buffer structure (average = frozen_copy(network)).
    decay: in [0, 1]; 0 copies the network, 1 freezes the average.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay!r}; 0.9999 is SEDD's value")
    averaged = [p for p in average.parameters()]
    current = [p.detach().to(a.dtype) for p, a in zip(network.parameters(), averaged, strict=True)]
    torch._foreach_lerp_(averaged, current, 1.0 - decay)
    for target, source in zip(average.buffers(), network.buffers(), strict=True):
        target.copy_(source)
