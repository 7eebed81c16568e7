"""from_pretrained: detect a released checkpoint's layout and load it into one of this project's networks.

Each layout is an object with `name`, `description`, `matches(source) -> bool` (a cheap rule on the config that
identifies it) and `load(source, device) -> nn.Module`. Exactly one layout must match: none, or several, raises
(detection never guesses). A further layout is one more module with such an object, added to LAYOUTS.
"""

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from models.pretrained.info import CheckpointError
from models.pretrained.mdlm import MDLMHubLayout
from models.pretrained.mdlm_lightning import MDLMLightningLayout
from models.pretrained.native import NativeLayout
from models.pretrained.radd import RADDLayout
from models.pretrained.sedd import SEDDLayout
from models.pretrained.source import CheckpointSource


class Layout(Protocol):
    """A checkpoint layout: its detection rule and its loader."""

    name: str
    description: str

    def matches(self, source: CheckpointSource) -> bool: ...

    def load(self, source: CheckpointSource, device: torch.device) -> nn.Module: ...


LAYOUTS: tuple[Layout, ...] = (NativeLayout(), SEDDLayout(), RADDLayout(), MDLMHubLayout(), MDLMLightningLayout())


def detect_layout(source: CheckpointSource) -> Layout:
    """The one layout of LAYOUTS that matches source; CheckpointError naming the config file when none or several do."""
    matching = [layout for layout in LAYOUTS if layout.matches(source)]
    if len(matching) == 1:
        return matching[0]
    known = "; ".join(layout.description for layout in LAYOUTS)
    if not matching:
        raise CheckpointError(f"unknown layout: {source.found()}; known layouts: {known}")
    names = ", ".join(layout.description for layout in matching)
    raise CheckpointError(f"ambiguous layout: {source.found()} matches several layouts ({names})")


def from_pretrained(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """A checkpoint of this project or a released SEDD, RADD or MDLM checkpoint as this project's network, in eval
    mode, on `device`.

    path: a `lightning fit` checkpoint file or a `lightning export` directory (models.pretrained.native: the EMA
    weights, float32 as trained); a directory (config.json with model.safetensors or pytorch_model.bin; or a
    SEDD/RADD run directory with
    .hydra/config.yaml and checkpoints-meta/checkpoint.pth) or an MDLM Lightning .ckpt file. Returns models.DiT
    (SEDD: net(x, sigma) is SEDD's log concrete score), models.RADDDenoiser (RADD: net(x) is log p(x0 | x_t) over
    the V clean tokens) or models.MDLMDenoiser (MDLM's SUBS log-probabilities), with the weights of the checkpoint
    (the EMA weights for a run directory or a .ckpt, as the references load them) and two attributes:
    `network.process`, the ctmc.ForwardProcess the config names, and `network.pretrained`, a PretrainedInfo.

    Raises FileNotFoundError for a missing path, config or weights file, and CheckpointError (a ValueError; one
    line naming the file and the key) for an unknown layout, a missing, unexpected or mis-shaped key, or an option
    this project does not have. Weights are read with safetensors or torch.load(weights_only=True); nothing runs.
    """
    source = CheckpointSource(path)
    return detect_layout(source).load(source, torch.device(device))
