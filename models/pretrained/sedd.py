"""SEDD checkpoints (Lou et al. 2024; louaaron/Score-Entropy-Discrete-Diffusion, hub louaaron/sedd-small, -medium).

Layout: a Hydra config with model.type "ddit" (config.json of a hub directory or a run's .hydra/config.yaml; files
in models.pretrained.hydra_files). The network is models.DiT over all states of the graph (tokens + 1 for "absorb",
tokens for "uniform"), with SEDD's scale_by_sigma as absorbing_parameterization: net(x, sigma) equals SEDD's
forward(indices, sigma), the log concrete score with its shift and the zero at the input token. Weights: see
models.pretrained.ddit. The process is graph x noise (models.pretrained.noise); the loss, score entropy.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ctmc
from models.dit import DiT
from models.pretrained.assemble import NetworkPlan, on_meta
from models.pretrained.ddit import DDiTShape
from models.pretrained.hydra_files import HydraLayout
from models.pretrained.info import CheckpointError, PretrainedInfo
from models.pretrained.noise import gpt2_tokenizer, noise_schedule
from models.pretrained.reading import setting


class SEDDLayout(HydraLayout):
    """Config reading of SEDD checkpoints (module doc)."""

    name = "sedd"
    model_type = "ddit"
    description = "SEDD: config.json or .hydra/config.yaml with model.type 'ddit'"

    def plan(self, config: Mapping[str, Any], file: Path) -> NetworkPlan:
        """The DiT, process and facts that SEDD's config describes; CheckpointError naming file and key."""
        tokens = setting(config, "tokens", file, int)
        graph = setting(config, "graph.type", file, str)
        if graph not in ("absorb", "uniform"):
            raise CheckpointError(f"{file}: key 'graph.type' is {graph!r}; supported graphs: 'absorb', 'uniform'")
        absorbing = graph == "absorb"
        scale_by_sigma = setting(config, "model.scale_by_sigma", file, bool)
        if scale_by_sigma and not absorbing:
            raise CheckpointError(
                f"{file}: key 'model.scale_by_sigma' is true with graph 'uniform', which SEDD refuses"
            )
        states = tokens + 1 if absorbing else tokens
        shape = DDiTShape(
            hidden_size=setting(config, "model.hidden_size", file, int),
            num_blocks=setting(config, "model.n_blocks", file, int),
            num_heads=setting(config, "model.n_heads", file, int),
            cond_dim=setting(config, "model.cond_dim", file, int),
            input_states=states,
            output_states=states,
        )
        length = setting(config, "model.length", file, int)
        dropout = setting(config, "model.dropout", file, float)
        rate_matrix = ctmc.Absorbing(tokens) if absorbing else ctmc.Uniform(tokens)

        def build() -> DiT:
            return DiT(
                vocab_size=states,
                hidden_size=shape.hidden_size,
                num_layers=shape.num_blocks,
                num_heads=shape.num_heads,
                cond_dim=shape.cond_dim,
                max_length=length,
                dropout=dropout,
                absorbing_parameterization=scale_by_sigma,
            )

        info = PretrainedInfo(
            layout=self.name,
            path="",
            weights="",
            ema=False,
            vocab_size=tokens,
            seq_len=length,
            tokenizer=gpt2_tokenizer(tokens),
            output="log_score",
            time_conditioned=True,
            loss="losses.ScoreEntropy",
            config=config,
        )
        process = ctmc.ForwardProcess(rate_matrix, noise_schedule(config, file))
        return NetworkPlan(shape, on_meta(build, file), states, process, info, file)
