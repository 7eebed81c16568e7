"""The DDiT weights of SEDD, RADD and MDLM, checked against their config and renamed onto this project's networks.

SEDD's model/transformer.py (`SEDD`), RADD's time-free copy of it (`RADD`, model type "ddit_wot": no noise input,
LayerNorms with a bias, no adaLN) and MDLM's models/dit.py (`DIT`) name their parameters alike. The map is exact:
renames only, plus dropping the mask's output row for the clean-token denoisers (its logit is never used).

    reference key (shape)                          this project's key               why it is the same function
    vocab_embed.embedding (N_in, H)                trunk.embedding.weight           a row per input state
    sigma_map.mlp.{0,2}.{weight,bias}              noise_embedding.mlp.{0,2}.*      256 frequencies, max period 1e4;
                                                                                    SEDD's F.silu after it is mlp.3
    rotary_emb.inv_freq (D/2,) buffer              (checked, not stored)            half-split RoPE, base 10000
    blocks.i.norm1.weight (, .bias: RADD)          trunk.blocks.i.attention_norm.*  LayerNorm in float32, eps 1e-5
    blocks.i.attn_qkv.weight (3H, H)               trunk.blocks.i.attention.qkv.*   rows split (three, heads, D)
    blocks.i.attn_out.weight (H, H)                trunk.blocks.i.attention.out.*   no biases
    blocks.i.norm2.weight (, .bias: RADD)          trunk.blocks.i.mlp_norm.*
    blocks.i.mlp.{0,2}.{weight,bias}               trunk.blocks.i.mlp.{0,2}.*       GELU(tanh) between
    blocks.i.adaLN_modulation.* (6H, C)            trunk.blocks.i.modulation.*      chunks (shift, scale, gate) x
                                                                                    (attention, MLP), x (1 + scale)
    output_layer.norm_final.weight (, .bias)       trunk.final_norm.norm.*
    output_layer.adaLN_modulation.* (2H, C)        trunk.final_norm.modulation.*    chunks (shift, scale)
    output_layer.linear.weight (N_out, H), .bias   trunk.output_weight, output_bias first `output_rows` rows

The reference's parameter order (its `model.parameters()`, which its ExponentialMovingAverage's shadow_params
follow) is the order of `parameter_shapes`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from models.pretrained.info import CheckpointError
from models.rotary import ROTARY_BASE

ROTARY_KEY = "rotary_emb.inv_freq"


@dataclass(frozen=True)
class DDiTShape:
    """The sizes of a reference DDiT: width H, blocks, heads, conditioning size C (None: RADD's time-free blocks),
    rows of the token embedding (input states) and of the output layer (output states)."""

    hidden_size: int
    num_blocks: int
    num_heads: int
    cond_dim: int | None
    input_states: int
    output_states: int


def parameter_shapes(shape: DDiTShape) -> dict[str, tuple[int, ...]]:
    """{reference parameter name: shape} in the reference's parameter order (buffers excluded)."""
    hidden, cond = shape.hidden_size, shape.cond_dim
    conditioned = cond is not None
    shapes: dict[str, tuple[int, ...]] = {"vocab_embed.embedding": (shape.input_states, hidden)}
    if conditioned:
        shapes |= {
            "sigma_map.mlp.0.weight": (cond, 256),
            "sigma_map.mlp.0.bias": (cond,),
            "sigma_map.mlp.2.weight": (cond, cond),
            "sigma_map.mlp.2.bias": (cond,),
        }
    norm = {"weight": (hidden,)} if conditioned else {"weight": (hidden,), "bias": (hidden,)}
    for index in range(shape.num_blocks):
        block = f"blocks.{index}."
        shapes |= {block + f"norm1.{name}": size for name, size in norm.items()}
        shapes |= {block + "attn_qkv.weight": (3 * hidden, hidden), block + "attn_out.weight": (hidden, hidden)}
        shapes |= {block + f"norm2.{name}": size for name, size in norm.items()}
        shapes |= {
            block + "mlp.0.weight": (4 * hidden, hidden),
            block + "mlp.0.bias": (4 * hidden,),
            block + "mlp.2.weight": (hidden, 4 * hidden),
            block + "mlp.2.bias": (hidden,),
        }
        if conditioned:
            shapes |= {
                block + "adaLN_modulation.weight": (6 * hidden, cond),
                block + "adaLN_modulation.bias": (6 * hidden,),
            }
    shapes |= {f"output_layer.norm_final.{name}": size for name, size in norm.items()}
    shapes |= {
        "output_layer.linear.weight": (shape.output_states, hidden),
        "output_layer.linear.bias": (shape.output_states,),
    }
    if conditioned:
        shapes |= {
            "output_layer.adaLN_modulation.weight": (2 * hidden, cond),
            "output_layer.adaLN_modulation.bias": (2 * hidden,),
        }
    return shapes


def _check_rotary(inverse_frequencies: Tensor, shape: DDiTShape, file: Path, key: str) -> None:
    """The reference's RoPE buffer 1 / 10000^(2i/D) must be ours: same size and base (skipped on 'meta')."""
    head_dim = shape.hidden_size // shape.num_heads
    if inverse_frequencies.shape != (head_dim // 2,):
        raise CheckpointError(
            f"{file}: key '{key}' has shape {tuple(inverse_frequencies.shape)}, the config implies ({head_dim // 2},)"
        )
    if inverse_frequencies.is_meta:
        return
    ours = ROTARY_BASE ** -(torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if not torch.allclose(inverse_frequencies.double(), ours, rtol=1e-5, atol=0.0):
        raise CheckpointError(f"{file}: key '{key}' holds RoPE frequencies of a base other than {ROTARY_BASE:g}")


def check_reference_state(
    state: Mapping[str, Tensor], shape: DDiTShape, file: Path, prefix: str = "", location: str = ""
) -> dict[str, Tensor]:
    """The reference parameters in `state` (their keys start with `prefix`, e.g. MDLM's "backbone."), by reference
    name, after checking every key of parameter_shapes(shape) is there with its shape, and nothing else but the
    optional rotary buffer (whose frequencies are checked). CheckpointError naming file and key otherwise; the
    key is shown as location + key (location: where the state dict sits in the file, e.g. "state_dict.")."""
    expected = parameter_shapes(shape)
    for name, size in expected.items():
        key = prefix + name
        if key not in state:
            raise CheckpointError(f"{file}: key '{location}{key}' is missing (a weight of shape {size} by the config)")
        if tuple(state[key].shape) != size:
            raise CheckpointError(
                f"{file}: key '{location}{key}' has shape {tuple(state[key].shape)}, the config implies {size}"
            )
    for key in state:
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name == ROTARY_KEY:
            _check_rotary(state[key], shape, file, location + key)
        elif name not in expected:
            raise CheckpointError(f"{file}: unexpected key '{location}{key}': the config's network has no such weight")
    return {name: state[prefix + name] for name in expected}


def ema_parameters(ema: Any, shape: DDiTShape, file: Path, key: str = "ema") -> dict[str, Tensor]:
    """The weights of the references' ExponentialMovingAverage state ({"decay", "num_updates", "shadow_params"}),
    by reference name: shadow_params[i] is the i-th parameter in the reference's parameter order (what its copy_to
    assumes). CheckpointError naming file and key when the list does not match parameter_shapes(shape)."""
    expected = parameter_shapes(shape)
    shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(tensor, Tensor) for tensor in shadow):
        raise CheckpointError(f"{file}: key '{key}.shadow_params' is missing or not a list of tensors")
    if len(shadow) != len(expected):
        raise CheckpointError(
            f"{file}: key '{key}.shadow_params' holds {len(shadow)} tensors, the config's network has "
            f"{len(expected)} parameters"
        )
    for index, ((name, size), tensor) in enumerate(zip(expected.items(), shadow, strict=True)):
        if tuple(tensor.shape) != size:
            raise CheckpointError(
                f"{file}: key '{key}.shadow_params' entry {index} ({name}) has shape {tuple(tensor.shape)}, "
                f"the config implies {size}"
            )
    return dict(zip(expected, shadow, strict=True))


def network_state(parameters: Mapping[str, Tensor], output_rows: int) -> dict[str, Tensor]:
    """The state dict of models.DiT / RADDDenoiser / MDLMDenoiser from reference parameters (module table), with the
    first `output_rows` rows of the output layer."""
    renames = {
        "vocab_embed.embedding": "trunk.embedding.weight",
        "output_layer.norm_final.weight": "trunk.final_norm.norm.weight",
        "output_layer.norm_final.bias": "trunk.final_norm.norm.bias",
        "output_layer.adaLN_modulation.weight": "trunk.final_norm.modulation.weight",
        "output_layer.adaLN_modulation.bias": "trunk.final_norm.modulation.bias",
    }
    block_parts = {
        "norm1": "attention_norm",
        "attn_qkv": "attention.qkv",
        "attn_out": "attention.out",
        "norm2": "mlp_norm",
        "mlp.0": "mlp.0",
        "mlp.2": "mlp.2",
        "adaLN_modulation": "modulation",
    }
    state = {}
    for name, tensor in parameters.items():
        if name.startswith("sigma_map."):
            state["noise_embedding." + name.removeprefix("sigma_map.")] = tensor
        elif name.startswith("blocks."):
            _, index, rest = name.split(".", 2)
            part, parameter = rest.rsplit(".", 1)
            state[f"trunk.blocks.{index}.{block_parts[part]}.{parameter}"] = tensor
        elif name == "output_layer.linear.weight":
            state["trunk.output_weight"] = tensor[:output_rows]
        elif name == "output_layer.linear.bias":
            state["trunk.output_bias"] = tensor[:output_rows]
        else:
            state[renames[name]] = tensor
    return state
