"""RADD checkpoints (Ou et al. 2024; ML-GSAI/RADD, hub JingyangOu/radd-*).

Layout: a Hydra config with model.type "ddit_wot" (config.json of a hub directory or a run's .hydra/config.yaml;
files in models.pretrained.hydra_files). RADD's network is SEDD's DDiT without any noise input (no sigma map, no
adaLN; LayerNorms with weight and bias) and tokens + 1 outputs, of which its forward log-softmaxes the first
`tokens`. The network is models.RADDDenoiser(tokens), whose head keeps those rows: net(x) equals RADD's
log-probabilities over the clean tokens (RADD leaves the mask column a raw logit; it has no row here).
The process is the absorbing chain with the config's noise; the loss follows training.loss_type (LOSSES).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ctmc
from models.pretrained.assemble import NetworkPlan, on_meta
from models.pretrained.ddit import DDiTShape
from models.pretrained.hydra_files import HydraLayout
from models.pretrained.info import CheckpointError, PretrainedInfo
from models.pretrained.noise import gpt2_tokenizer, noise_schedule
from models.pretrained.reading import setting
from models.radd import RADDDenoiser

# RADD's training.loss_type -> the loss of this project with the same objective (the same expected loss):
# t-DSE is t-DCE plus terms without parameters (losses.TDCE is score entropy with the RADD score, exactly), and
# k-DCE (k masked positions, k uniform) estimates the any-order loss that lambda-DCE estimates.
LOSSES = {
    "t_DCE": "losses.TDCE",
    "t_DSE": "losses.TDCE",
    "lambda_DCE": "losses.LambdaDCE",
    "k_DCE": "losses.LambdaDCE",
}


class RADDLayout(HydraLayout):
    """Config reading of RADD checkpoints (module doc)."""

    name = "radd"
    model_type = "ddit_wot"
    description = "RADD: config.json or .hydra/config.yaml with model.type 'ddit_wot'"

    def plan(self, config: Mapping[str, Any], file: Path) -> NetworkPlan:
        """The RADDDenoiser, process and facts that RADD's config describes; CheckpointError naming file and key."""
        tokens = setting(config, "tokens", file, int)
        loss_type = setting(config, "training.loss_type", file, str)
        if loss_type not in LOSSES:
            raise CheckpointError(
                f"{file}: key 'training.loss_type' is {loss_type!r}, an objective without a loss here; "
                f"supported: {sorted(LOSSES)}"
            )
        shape = DDiTShape(
            hidden_size=setting(config, "model.hidden_size", file, int),
            num_blocks=setting(config, "model.n_blocks", file, int),
            num_heads=setting(config, "model.n_heads", file, int),
            cond_dim=None,
            input_states=tokens + 1,
            output_states=tokens + 1,
        )
        length = setting(config, "model.length", file, int)
        dropout = setting(config, "model.dropout", file, float)

        def build() -> RADDDenoiser:
            return RADDDenoiser(
                vocab_size=tokens,
                hidden_size=shape.hidden_size,
                num_layers=shape.num_blocks,
                num_heads=shape.num_heads,
                max_length=length,
                dropout=dropout,
            )

        info = PretrainedInfo(
            layout=self.name,
            path="",
            weights="",
            ema=False,
            vocab_size=tokens,
            seq_len=length,
            tokenizer=gpt2_tokenizer(tokens),
            output="log_probs",
            time_conditioned=False,
            loss=LOSSES[loss_type],
            config=config,
        )
        process = ctmc.ForwardProcess(ctmc.Absorbing(tokens), noise_schedule(config, file))
        return NetworkPlan(shape, on_meta(build, file), tokens, process, info, file)
