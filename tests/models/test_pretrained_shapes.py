"""The released models' sizes (SEDD small and medium, RADD small, MDLM OWT: 50,257 GPT-2 tokens, 1,024 positions)
build and take a state dict of the references' shapes on the meta device, without memory. Reference: the test's
own list of the references' parameter names and shapes (pretrained_reference), and its parameter count."""

import math
from pathlib import Path

import pytest
import torch
from pretrained_reference import reference_names, reference_shape, rotary_buffer

from models import DiT, MDLMDenoiser, RADDDenoiser
from models.pretrained.assemble import assemble
from models.pretrained.ddit import check_reference_state
from models.pretrained.mdlm import MDLMHubLayout
from models.pretrained.radd import RADDLayout
from models.pretrained.sedd import SEDDLayout

GPT2 = 50257
MODEL = {"type": "ddit", "cond_dim": 128, "length": 1024, "scale_by_sigma": True, "dropout": 0.1}
SMALL = {"hidden_size": 768, "n_blocks": 12, "n_heads": 12}
MEDIUM = {"hidden_size": 1024, "n_blocks": 24, "n_heads": 16}


def _meta_state(hidden: int, heads: int, blocks: int, cond: int | None, prefix: str = "") -> dict[str, torch.Tensor]:
    """The reference's state dict of these sizes as meta tensors (the rotary buffer with its real values)."""
    names = reference_names(blocks, conditioned=cond is not None)
    state = {prefix + n: torch.empty(reference_shape(n, hidden, cond or 0, GPT2 + 1), device="meta") for n in names}
    state[prefix + "rotary_emb.inv_freq"] = rotary_buffer(hidden // heads)
    return state


def _load_on_meta(layout, config: dict, state: dict[str, torch.Tensor], prefix: str = "") -> torch.nn.Module:
    plan = layout.plan(config, Path("config.json"))
    parameters = check_reference_state(state, plan.shape, Path("model.safetensors"), prefix=prefix)
    return assemble(plan, parameters, torch.device("meta"), Path("hub"), Path("model.safetensors"), ema=False)


def _reference_count(state: dict[str, torch.Tensor]) -> int:
    return sum(math.prod(t.shape) for name, t in state.items() if not name.endswith("inv_freq"))


@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["small", "medium"])
def test_sedd_released_sizes_load_on_meta(size):
    """louaaron/sedd-small and -medium: a DiT over 50,258 states holding every reference parameter."""
    config = {"tokens": GPT2, "graph": {"type": "absorb"}, "noise": {"type": "loglinear"}, "model": MODEL | size}
    state = _meta_state(size["hidden_size"], size["n_heads"], size["n_blocks"], 128)
    network = _load_on_meta(SEDDLayout(), config, state)
    assert isinstance(network, DiT) and network.vocab_size == GPT2 + 1 and network.max_length == 1024
    assert all(parameter.is_meta for parameter in network.parameters())
    assert network.trunk.embedding.weight.shape == (GPT2 + 1, size["hidden_size"])
    assert network.num_parameters == _reference_count(state)
    info = network.pretrained
    assert (info.vocab_size, info.seq_len, info.tokenizer) == (GPT2, 1024, "gpt2")


def test_radd_small_loads_on_meta():
    """RADD small: a RADDDenoiser(50,257); the reference's mask output row (H weights + 1 bias) is not kept."""
    config = {"tokens": GPT2, "training": {"loss_type": "lambda_DCE"}, "noise": {"type": "loglinear"}}
    config["model"] = {"type": "ddit_wot", "length": 1024, "dropout": 0.02} | SMALL
    state = _meta_state(768, 12, 12, None)
    network = _load_on_meta(RADDLayout(), config, state)
    assert isinstance(network, RADDDenoiser) and network.vocab_size == GPT2
    assert network.num_parameters == _reference_count(state) - (768 + 1)


def test_mdlm_owt_loads_on_meta():
    """kuleshov-group/mdlm-owt: an MDLMDenoiser(50,257) from the "backbone." keys, without the mask output row."""
    config = {
        "model_type": "mdlm",
        "vocab_size": GPT2 + 1,
        "hidden_dim": 768,
        "cond_dim": 128,
        "n_blocks": 12,
        "n_heads": 12,
        "model_length": 1024,
        "dropout": 0.1,
        "time_conditioning": False,
    }
    state = _meta_state(768, 12, 12, 128, prefix="backbone.")
    network = _load_on_meta(MDLMHubLayout(), config, state, prefix="backbone.")
    assert isinstance(network, MDLMDenoiser) and network.vocab_size == GPT2 and not network.time_conditioning
    assert network.num_parameters == _reference_count(state) - (768 + 1)
    assert network.pretrained.tokenizer == "gpt2"
