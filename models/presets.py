"""Named model sizes and parameter counting."""

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelSize:
    """Width and depth of a transformer trunk. cond_dim is the adaLN conditioning size (DiT only)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    cond_dim: int


PRESETS: dict[str, ModelSize] = {
    # For unit tests on CPU.
    "tiny": ModelSize(hidden_size=64, num_layers=2, num_heads=2, cond_dim=32),
    # SEDD small / GPT-2 small (SEDD configs/model/small.yaml).
    "small": ModelSize(hidden_size=768, num_layers=12, num_heads=12, cond_dim=128),
    # SEDD medium / GPT-2 medium (SEDD configs/model/medium.yaml).
    "medium": ModelSize(hidden_size=1024, num_layers=24, num_heads=16, cond_dim=128),
}


def preset_arguments(name: str, **overrides: Any) -> dict[str, Any]:
    """The constructor arguments of preset `name` (asdict of its ModelSize), updated with overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets are {sorted(PRESETS)}")
    return {**asdict(PRESETS[name]), **overrides}


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of module, counting shared (tied) tensors once. Works on 'meta'."""
    return sum(parameter.numel() for parameter in module.parameters())
