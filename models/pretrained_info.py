"""`PretrainedInfo`: what a loaded checkpoint says about the network it holds (`network.pretrained`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PretrainedInfo:
    """Where a network's weights came from and what it was trained for.

    layout: "native" (this project's checkpoint or exported directory), "sedd", "radd" or "mdlm". path: the file
    or directory read. vocab_size: the clean tokens V (the mask excluded). seq_len: the trained context (None if
    unknown). tokenizer: "gpt2" or "char" when known, else None. loss: the class path of this project's loss that
    matches the training objective (None for an autoregressive model). kind: "diffusion" or "autoregressive".
    config: the configuration read, as a mapping.
    """

    layout: str
    path: str
    vocab_size: int | None
    seq_len: int | None
    tokenizer: str | None
    loss: str | dict[str, Any] | None
    kind: str = "diffusion"
    config: dict[str, Any] = field(default_factory=dict, repr=False)
