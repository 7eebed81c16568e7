"""The layouts described by a training run's Hydra config (SEDD, RADD), and their two file arrangements.

- Hub directory (PyTorchModelHubMixin, the references' load_model_hf): config.json (the run's config) and
  model.safetensors or pytorch_model.bin (the network's state dict).
- Training run directory (the references' load_model_local): .hydra/config.yaml and
  checkpoints-meta/checkpoint.pth = {"model": state dict, "ema": ExponentialMovingAverage state, "optimizer", "step"}.
  As load_model_local does, the network gets the EMA weights (ema.copy_to after load_state_dict(model)).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.pretrained.assemble import NetworkPlan, assemble
from models.pretrained.ddit import DDiTShape, check_reference_state, ema_parameters
from models.pretrained.info import CheckpointError
from models.pretrained.reading import as_state_dict, hub_weights_file, load_torch, read_weights, require_file
from models.pretrained.source import CONFIG_JSON, CheckpointSource

RUN_CHECKPOINT = Path("checkpoints-meta") / "checkpoint.pth"


def hydra_weights(
    source: CheckpointSource, config_file: Path, shape: DDiTShape
) -> tuple[dict[str, Tensor], Path, bool]:
    """(reference parameters by name, the file read, whether they are EMA weights), checked against `shape`;
    config_file: the source's config.json (hub) or .hydra/config.yaml (run)."""
    if config_file.name == CONFIG_JSON:
        file = hub_weights_file(source.path)
        return check_reference_state(read_weights(file), shape, file), file, False
    file = require_file(source.path / RUN_CHECKPOINT, "a SEDD/RADD run directory keeps its weights there")
    checkpoint = load_torch(file)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "ema" not in checkpoint:
        raise CheckpointError(
            f"{file}: keys 'model' and 'ema' are missing; expected the references' save_checkpoint dict"
        )
    check_reference_state(as_state_dict(checkpoint["model"], file, "key 'model'"), shape, file, location="model.")
    return ema_parameters(checkpoint["ema"], shape, file), file, True


class HydraLayout:
    """A layout whose Hydra config has model.type == `model_type`; subclasses give name, model_type, description
    and plan(config, file)."""

    name: str
    model_type: str
    description: str

    def matches(self, source: CheckpointSource) -> bool:
        """A Hydra config (config.json with a model section, or .hydra/config.yaml) with this model.type."""
        return source.hydra_config is not None and source.hydra_config[0]["model"].get("type") == self.model_type

    def plan(self, config: Mapping[str, Any], file: Path) -> NetworkPlan:
        raise NotImplementedError

    def load(self, source: CheckpointSource, device: torch.device) -> nn.Module:
        """The planned network with the checkpoint's weights (EMA for a run directory), .process and .pretrained."""
        config, file = source.hydra_config
        plan = self.plan(config, file)
        parameters, weights, ema = hydra_weights(source, file, plan.shape)
        return assemble(plan, parameters, device, source.path, weights, ema)
