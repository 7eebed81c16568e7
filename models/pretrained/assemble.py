"""What a checkpoint's config describes (`NetworkPlan`), and the network built from it with the checkpoint's weights."""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import ctmc
from models.pretrained.ddit import DDiTShape, network_state
from models.pretrained.info import CheckpointError, PretrainedInfo


def on_meta(build: Callable[[], nn.Module], config_file: Path) -> nn.Module:
    """build() on the meta device (no memory, no random init); a ValueError of the constructor (sizes it refuses)
    becomes a CheckpointError naming the config's file, before any weight is read."""
    try:
        with torch.device("meta"):
            return build()
    except ValueError as error:
        raise CheckpointError(f"{config_file}: the config describes a network that cannot be built: {error}") from None


@dataclass(frozen=True)
class NetworkPlan:
    """A layout's reading of a config, before any weight is read: the reference network's `shape`, this project's
    `network` on the meta device (`on_meta`; `assemble` gives it its weights), the rows of the reference's output
    layer that it keeps (`output_rows`), the forward `process`, the `info` (its path, weights and ema fields are
    filled in by `assemble`) and the config's file, named by errors."""

    shape: DDiTShape
    network: nn.Module
    output_rows: int
    process: ctmc.ForwardProcess
    info: PretrainedInfo
    config_file: Path


def assemble(
    plan: NetworkPlan, parameters: Mapping[str, Tensor], device: torch.device, path: Path, weights: Path, ema: bool
) -> nn.Module:
    """plan.network with the reference `parameters` (checked by ddit.check_reference_state or ddit.ema_parameters),
    renamed and cast to float32 on `device`, assigned to it (strict: every key of the network, nothing else).
    Returns it in eval mode with `network.process` and `network.pretrained` (plan.info with path, weights, ema).
    On device "meta" nothing is allocated.
    """
    network = plan.network
    state = network_state(parameters, plan.output_rows)
    network.load_state_dict(
        {name: tensor.to(device=device, dtype=torch.float32).contiguous() for name, tensor in state.items()},
        strict=True,
        assign=True,
    )
    network.process = plan.process
    network.pretrained = dataclasses.replace(plan.info, path=str(path), weights=str(weights), ema=ema)
    return network.eval()
