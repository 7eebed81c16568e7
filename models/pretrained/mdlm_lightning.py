"""MDLM checkpoints (Sahoo et al. 2024; kuleshov-group/mdlm): the Lightning .ckpt of a training run.

Layout: a file written by Lightning from MDLM's `Diffusion` module: "state_dict" (its DIT under "backbone."),
"ema" (the ExponentialMovingAverage state over the backbone's parameters; MDLM's noise schedules have none) and
"hyper_parameters" = {"config": the run's OmegaConf config, "tokenizer": ...}, read without running code
(models.pretrained.lightning). Detected by a config with `backbone` and `parameterization`. Supported: backbone
"dit", parameterization "subs", T = 0 (continuous time), and a GPT-2 tokenizer (no mask token, so the mask is
appended last; MDLM puts it at the tokenizer's own mask id otherwise). The vocabulary size comes from the token
embedding (the config does not hold it). As MDLM evaluates, the EMA weights are loaded when training.ema > 0.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.pretrained.assemble import NetworkPlan, assemble
from models.pretrained.ddit import DDiTShape, check_reference_state, ema_parameters
from models.pretrained.info import CheckpointError
from models.pretrained.lightning import plain
from models.pretrained.mdlm import BACKBONE, mdlm_plan
from models.pretrained.noise import noise_schedule
from models.pretrained.reading import as_state_dict, setting
from models.pretrained.source import CheckpointSource

CONFIG_KEY = "hyper_parameters.config."  # where the run's config sits in the checkpoint, for messages
EMBEDDING_KEY = BACKBONE + "vocab_embed.embedding"


def run_config(checkpoint: Mapping[str, Any]) -> Any:
    """checkpoint["hyper_parameters"]["config"] as plain dicts (None when absent)."""
    hyper_parameters = checkpoint.get("hyper_parameters")
    return plain(hyper_parameters.get("config")) if isinstance(hyper_parameters, Mapping) else None


class MDLMLightningLayout:
    """Detection rule, config reading and loader of MDLM's Lightning checkpoints (module doc)."""

    name = "mdlm"
    description = "MDLM (Lightning .ckpt): hyper_parameters.config with 'backbone' and 'parameterization'"

    def matches(self, source: CheckpointSource) -> bool:
        """A checkpoint file whose hyper_parameters.config has `backbone` and `parameterization`."""
        if source.lightning_checkpoint is None:
            return False
        config = run_config(source.lightning_checkpoint)
        return isinstance(config, Mapping) and "backbone" in config and "parameterization" in config

    def plan(self, config: Mapping[str, Any], file: Path, states: int) -> NetworkPlan:
        """The MDLMDenoiser over states - 1 clean tokens, process and facts of MDLM's run config; CheckpointError
        naming file and key for an option this project does not have."""

        def get(key: str, kind: type) -> Any:
            return setting(config, key, file, kind, prefix=CONFIG_KEY)

        for key, supported in (("backbone", "dit"), ("parameterization", "subs")):
            if get(key, str) != supported:
                raise CheckpointError(f"{file}: key '{CONFIG_KEY}{key}' is {get(key, str)!r}; supported: {supported!r}")
        if get("T", int) != 0:
            raise CheckpointError(f"{file}: key '{CONFIG_KEY}T' is {get('T', int)}; supported: 0 (continuous time)")
        tokenizer = get("data.tokenizer_name_or_path", str)
        if not tokenizer.startswith("gpt2"):
            raise CheckpointError(
                f"{file}: key '{CONFIG_KEY}data.tokenizer_name_or_path' is {tokenizer!r}; supported: GPT-2 "
                "tokenizers, whose vocabulary has no mask token (MDLM then appends the mask last)"
            )
        shape = DDiTShape(
            hidden_size=get("model.hidden_size", int),
            num_blocks=get("model.n_blocks", int),
            num_heads=get("model.n_heads", int),
            cond_dim=get("model.cond_dim", int),
            input_states=states,
            output_states=states,
        )
        return mdlm_plan(
            shape,
            length=get("model.length", int),
            dropout=get("model.dropout", float),
            time_conditioning=get("time_conditioning", bool),
            schedule=noise_schedule(config, file, prefix=CONFIG_KEY),
            tokenizer="gpt2",
            config=config,
            file=file,
        )

    def load(self, source: CheckpointSource, device: torch.device) -> nn.Module:
        """models.MDLMDenoiser with the checkpoint's EMA weights (raw ones when training.ema is 0)."""
        checkpoint, file = source.lightning_checkpoint, source.path
        config = run_config(checkpoint)
        state = as_state_dict(checkpoint.get("state_dict"), file, "key 'state_dict'")
        if EMBEDDING_KEY not in state or state[EMBEDDING_KEY].dim() != 2:
            raise CheckpointError(
                f"{file}: key 'state_dict.{EMBEDDING_KEY}' is missing or not a (states, width) matrix"
            )
        plan = self.plan(config, file, states=state[EMBEDDING_KEY].shape[0])
        parameters = check_reference_state(state, plan.shape, file, prefix=BACKBONE, location="state_dict.")
        ema = setting(config, "training.ema", file, float, prefix=CONFIG_KEY) > 0
        if ema:
            parameters = ema_parameters(checkpoint.get("ema"), plan.shape, file)
        return assemble(plan, parameters, device, source.path, file, ema)
