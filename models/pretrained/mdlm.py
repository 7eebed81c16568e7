"""MDLM checkpoints (Sahoo et al. 2024; kuleshov-group/mdlm, hub kuleshov-group/mdlm-owt): the Hugging Face layout.

Layout: a directory whose config.json is a transformers config with model_type "mdlm" (flat keys vocab_size, which
counts the mask, hidden_dim, cond_dim, n_blocks, n_heads, model_length, dropout, time_conditioning) and
model.safetensors (or pytorch_model.bin) whose keys are MDLM's DIT names under "backbone." (the HF model's
DITBackbone attribute). The network is models.MDLMDenoiser(vocab_size - 1): the DiT trunk with a head of the clean
tokens and MDLM's SUBS parameterisation (models/mdlm.py), so net(x) (net(x, sigma) with time conditioning) equals
MDLM's Diffusion.forward with parameterization "subs". The mask is the last state, vocab_size - 1, as MDLM makes it
for a tokenizer without a mask token (GPT-2). The config does not name a noise schedule: the process uses MDLM's
default, noise "loglinear" (ctmc.LogLinear(1e-3)); without time conditioning the network does not depend on it.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ctmc
from models.mdlm import MDLMDenoiser
from models.pretrained.assemble import NetworkPlan, assemble, on_meta
from models.pretrained.ddit import DDiTShape, check_reference_state
from models.pretrained.info import PretrainedInfo
from models.pretrained.noise import LOG_LINEAR_EPS, gpt2_tokenizer
from models.pretrained.reading import hub_weights_file, read_weights, setting
from models.pretrained.source import CONFIG_JSON, CheckpointSource

BACKBONE = "backbone."  # the key prefix of MDLM's DIT in both the HF model and the Lightning module


def mdlm_plan(
    shape: DDiTShape,
    length: int,
    dropout: float,
    time_conditioning: bool,
    schedule: ctmc.NoiseSchedule,
    tokenizer: str | None,
    config: Mapping[str, Any],
    file: Path,
) -> NetworkPlan:
    """The MDLMDenoiser over V = shape.input_states - 1 clean tokens (the mask last), absorbing process, facts."""
    vocab = shape.input_states - 1

    def build() -> MDLMDenoiser:
        return MDLMDenoiser(
            vocab_size=vocab,
            hidden_size=shape.hidden_size,
            num_layers=shape.num_blocks,
            num_heads=shape.num_heads,
            cond_dim=shape.cond_dim,
            max_length=length,
            dropout=dropout,
            time_conditioning=time_conditioning,
        )

    info = PretrainedInfo(
        layout="mdlm",
        path="",
        weights="",
        ema=False,
        vocab_size=vocab,
        seq_len=length,
        tokenizer=tokenizer,
        output="log_probs",
        time_conditioned=time_conditioning,
        loss="losses.MDLMNELBO",
        config=config,
    )
    return NetworkPlan(
        shape, on_meta(build, file), vocab, ctmc.ForwardProcess(ctmc.Absorbing(vocab), schedule), info, file
    )


class MDLMHubLayout:
    """Detection rule, config reading and loader of MDLM's Hugging Face layout (module doc)."""

    name = "mdlm"
    description = "MDLM (Hugging Face): config.json with model_type 'mdlm'"

    def matches(self, source: CheckpointSource) -> bool:
        """config.json with model_type "mdlm"."""
        return source.json_config is not None and source.json_config.get("model_type") == "mdlm"

    def plan(self, config: Mapping[str, Any], file: Path) -> NetworkPlan:
        """The MDLMDenoiser, process and facts of a flat MDLM config.json; CheckpointError naming file and key."""
        states = setting(config, "vocab_size", file, int)
        shape = DDiTShape(
            hidden_size=setting(config, "hidden_dim", file, int),
            num_blocks=setting(config, "n_blocks", file, int),
            num_heads=setting(config, "n_heads", file, int),
            cond_dim=setting(config, "cond_dim", file, int),
            input_states=states,
            output_states=states,
        )
        return mdlm_plan(
            shape,
            length=setting(config, "model_length", file, int),
            dropout=setting(config, "dropout", file, float),
            time_conditioning=setting(config, "time_conditioning", file, bool),
            schedule=ctmc.LogLinear(LOG_LINEAR_EPS),
            tokenizer=gpt2_tokenizer(states - 1),
            config=config,
            file=file,
        )

    def load(self, source: CheckpointSource, device: torch.device) -> nn.Module:
        """models.MDLMDenoiser with the hub weights, .process and .pretrained."""
        plan = self.plan(source.json_config, source.path / CONFIG_JSON)
        file = hub_weights_file(source.path)
        parameters = check_reference_state(read_weights(file), plan.shape, file, prefix=BACKBONE)
        return assemble(plan, parameters, device, source.path, file, ema=False)
