"""Test helpers for models.pretrained: the references' DDiT written anew in plain torch, and tiny checkpoints written
in each reference's file layout (file names, key names and shapes as the reference code defines them).

Sources read (not imported): SEDD model/transformer.py, model/rotary.py, model/ema.py, load_model.py, utils.py
(louaaron/Score-Entropy-Discrete-Diffusion); RADD model/transformer.py (ML-GSAI/RADD); MDLM models/dit.py,
diffusion.py (`_subs_parameterization`), models/ema.py (kuleshov-group/mdlm); UDLM's models/hf/modeling_udlm.py
for the Hugging Face wrapper's `backbone.` attribute (kuleshov-group/discrete-diffusion-guidance).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml
from torch import Tensor

MDLM_NEG_INFINITY = -1_000_000.0


# ----------------------------------------------------------------------------------------------------------------
# Weights with the references' names, shapes and parameter order
# ----------------------------------------------------------------------------------------------------------------


def reference_names(n_blocks: int, conditioned: bool) -> list[str]:
    """Parameter names in the order nn.Module registers them in SEDD's SEDD / MDLM's DIT (conditioned) and RADD's
    RADD (not conditioned): vocab_embed, sigma_map, [rotary buffer], blocks, output_layer."""
    names = ["vocab_embed.embedding"]
    if conditioned:
        names += ["sigma_map.mlp.0.weight", "sigma_map.mlp.0.bias", "sigma_map.mlp.2.weight", "sigma_map.mlp.2.bias"]
    for i in range(n_blocks):
        b = f"blocks.{i}."
        norm1 = [b + "norm1.weight"] if conditioned else [b + "norm1.weight", b + "norm1.bias"]
        norm2 = [b + "norm2.weight"] if conditioned else [b + "norm2.weight", b + "norm2.bias"]
        names += [*norm1, b + "attn_qkv.weight", b + "attn_out.weight", *norm2]
        names += [b + "mlp.0.weight", b + "mlp.0.bias", b + "mlp.2.weight", b + "mlp.2.bias"]
        if conditioned:
            names += [b + "adaLN_modulation.weight", b + "adaLN_modulation.bias"]
    final = ["output_layer.norm_final.weight"] + ([] if conditioned else ["output_layer.norm_final.bias"])
    names += [*final, "output_layer.linear.weight", "output_layer.linear.bias"]
    if conditioned:
        names += ["output_layer.adaLN_modulation.weight", "output_layer.adaLN_modulation.bias"]
    return names


def reference_shape(name: str, hidden: int, cond: int, states: int) -> tuple[int, ...]:
    """The shape SEDD/RADD/MDLM give parameter `name` (nn.Linear weights are (out, in))."""
    table = {
        "vocab_embed.embedding": (states, hidden),
        "sigma_map.mlp.0.weight": (cond, 256),
        "sigma_map.mlp.0.bias": (cond,),
        "sigma_map.mlp.2.weight": (cond, cond),
        "sigma_map.mlp.2.bias": (cond,),
        "attn_qkv.weight": (3 * hidden, hidden),
        "attn_out.weight": (hidden, hidden),
        "mlp.0.weight": (4 * hidden, hidden),
        "mlp.0.bias": (4 * hidden,),
        "mlp.2.weight": (hidden, 4 * hidden),
        "mlp.2.bias": (hidden,),
        "adaLN_modulation.weight": (6 * hidden, cond),
        "adaLN_modulation.bias": (6 * hidden,),
        "output_layer.linear.weight": (states, hidden),
        "output_layer.linear.bias": (states,),
        "output_layer.adaLN_modulation.weight": (2 * hidden, cond),
        "output_layer.adaLN_modulation.bias": (2 * hidden,),
    }
    if name in table:
        return table[name]
    if name.endswith(
        ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "norm_final.weight", "norm_final.bias")
    ):
        return (hidden,)
    return table[name.split(".", 2)[2]]  # blocks.i.<part>


def rotary_buffer(head_dim: int) -> Tensor:
    """SEDD's Rotary.inv_freq: 1 / (10000 ** (arange(0, dim, 2).float() / dim))."""
    return 1.0 / (10_000 ** (torch.arange(0, head_dim, 2).float() / head_dim))


def random_weights(
    hidden: int, n_heads: int, n_blocks: int, cond: int | None, states: int, seed: int, with_rotary: bool = True
) -> dict[str, Tensor]:
    """A float32 state dict of the reference network with random weights (the adaLN and output layers too, which
    training starts at zero), keys in state_dict order: the rotary buffer sits where rotary_emb is registered,
    after sigma_map (SEDD, MDLM) or after vocab_embed (RADD)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    rotary_after = "sigma_map.mlp.2.bias" if cond is not None else "vocab_embed.embedding"
    for name in reference_names(n_blocks, conditioned=cond is not None):
        shape = reference_shape(name, hidden, cond or 0, states)
        noise = torch.randn(shape, generator=generator)
        if "norm" in name:
            state[name] = 1.0 + 0.2 * noise if name.endswith("weight") else 0.2 * noise
        else:
            state[name] = noise / math.sqrt(shape[-1]) if len(shape) == 2 else 0.3 * noise
        if with_rotary and name == rotary_after:
            state["rotary_emb.inv_freq"] = rotary_buffer(hidden // n_heads)
    return state


# ----------------------------------------------------------------------------------------------------------------
# The reference forward, operation by operation
# ----------------------------------------------------------------------------------------------------------------


def _linear(x: Tensor, weights: dict[str, Tensor], name: str, bias: bool = True) -> Tensor:
    out = x @ weights[name + ".weight"].T
    return out + weights[name + ".bias"] if bias else out


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """F.layer_norm(x, [dim]) (eps 1e-5, biased variance) times weight (+ bias), as SEDD's LayerNorm / RADD's."""
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    out = (x - mean) / torch.sqrt(variance + 1e-5) * weight[None, None, :]
    return out + bias[None, None, :] if bias is not None else out


def _gelu_tanh(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def ddit_logits(weights: dict[str, Tensor], indices: Tensor, sigma: Tensor | None, n_heads: int) -> Tensor:
    """The reference DDiT's output layer logits (B, L, states) in the dtype of `weights`: SEDD's / MDLM's forward up
    to the output layer when `sigma` (B,) is given (it must be, iff the weights have sigma_map), RADD's otherwise."""
    dtype = weights["vocab_embed.embedding"].dtype
    conditioned = "sigma_map.mlp.0.weight" in weights
    x = weights["vocab_embed.embedding"][indices]  # EmbeddingLayer: self.embedding[x]
    batch, length, hidden = x.shape
    head_dim = hidden // n_heads
    if conditioned:
        # TimestepEmbedder.timestep_embedding(sigma, 256), its MLP (Linear, SiLU, Linear), then F.silu in forward
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=dtype) / half)
        args = sigma[:, None].to(dtype) * freqs[None]
        t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        hidden_c = _linear(t_freq, weights, "sigma_map.mlp.0")
        hidden_c = hidden_c * torch.sigmoid(hidden_c)
        c = _linear(hidden_c, weights, "sigma_map.mlp.2")
        c = c * torch.sigmoid(c)
    # Rotary: cos/sin tables (1, L, 3, 1, D) with the value slot made an identity (cos 1, sin 0)
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, head_dim, 2, dtype=dtype) / head_dim))
    freqs = torch.einsum("i,j->ij", torch.arange(length, dtype=dtype), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = emb.cos()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
    sin = emb.sin()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
    cos[:, :, 2, :, :] = 1.0
    sin[:, :, 2, :, :] = 0.0
    block_indices = sorted({int(name.split(".")[1]) for name in weights if name.startswith("blocks.")})
    for i in block_indices:
        b = f"blocks.{i}."
        bias1, bias2 = weights.get(b + "norm1.bias"), weights.get(b + "norm2.bias")
        if conditioned:
            modulation = _linear(c, weights, b + "adaLN_modulation")[:, None]
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(6, dim=2)
        x_skip = x
        x = _layer_norm(x, weights[b + "norm1.weight"], bias1)
        if conditioned:
            x = x * (1 + scale_msa) + shift_msa
        qkv = _linear(x, weights, b + "attn_qkv", bias=False).reshape(batch, length, 3, n_heads, head_dim)
        qkv = qkv * cos + _rotate_half(qkv) * sin
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # (B, heads, L, D)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1) @ v
        x = attention.transpose(1, 2).reshape(batch, length, hidden)
        x = _linear(x, weights, b + "attn_out", bias=False)
        x = x_skip + (gate_msa * x if conditioned else x)
        y = _layer_norm(x, weights[b + "norm2.weight"], bias2)
        if conditioned:
            y = y * (1 + scale_mlp) + shift_mlp
        y = _linear(_gelu_tanh(_linear(y, weights, b + "mlp.0")), weights, b + "mlp.2")
        x = x + (gate_mlp * y if conditioned else y)
    x = _layer_norm(x, weights["output_layer.norm_final.weight"], weights.get("output_layer.norm_final.bias"))
    if conditioned:
        shift, scale = _linear(c, weights, "output_layer.adaLN_modulation")[:, None].chunk(2, dim=2)
        x = x * (1 + scale) + shift
    return _linear(x, weights, "output_layer.linear")


def sedd_forward(
    weights: dict[str, Tensor], indices: Tensor, sigma: Tensor, n_heads: int, scale_by_sigma: bool
) -> Tensor:
    """SEDD.forward(indices, sigma): logits, the scale_by_sigma shift, then 0 at the input token."""
    x = ddit_logits(weights, indices, sigma, n_heads)
    if scale_by_sigma:
        sigma = sigma.to(x.dtype)
        esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log()[:, None, None]
        x = x - esigm1_log - math.log(x.shape[-1] - 1)
    return torch.scatter(x, -1, indices[..., None], torch.zeros_like(x[..., :1]))


def radd_forward(weights: dict[str, Tensor], indices: Tensor, n_heads: int) -> Tensor:
    """RADD.forward(indices) (B, L, tokens + 1): logits, x[:, :, :-1] = log_softmax of the first `tokens` columns."""
    x = ddit_logits(weights, indices, None, n_heads)
    x[:, :, :-1] = x[:, :, :-1].log_softmax(dim=-1)
    return x


def mdlm_subs_forward(weights: dict[str, Tensor], xt: Tensor, sigma: Tensor, n_heads: int, mask_index: int) -> Tensor:
    """MDLM's Diffusion.forward with parameterization 'subs' (B, L, V + 1): the backbone at `sigma` (the caller
    passes zeros without time conditioning), the mask logit pushed to -1e6, log-normalised, carry-over."""
    logits = ddit_logits(weights, xt, sigma, n_heads)
    logits[:, :, mask_index] += MDLM_NEG_INFINITY
    logits = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    unmasked_indices = xt != mask_index
    logits[unmasked_indices] = MDLM_NEG_INFINITY
    logits[unmasked_indices, xt[unmasked_indices]] = 0
    return logits


def as_float64(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor.double() for name, tensor in weights.items()}


# ----------------------------------------------------------------------------------------------------------------
# Configs and file layouts
# ----------------------------------------------------------------------------------------------------------------

TINY = {"hidden": 16, "n_heads": 2, "n_blocks": 2, "cond": 8, "length": 12}


def sedd_config(tokens: int, graph: str = "absorb", noise: str = "loglinear", scale_by_sigma: bool = True) -> dict:
    """A SEDD Hydra config (configs/config.yaml + configs/model/small.yaml) with a tiny model."""
    return {
        "ngpus": 1,
        "tokens": tokens,
        "training": {"batch_size": 8, "ema": 0.9999, "weight": "standard"},
        "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
        "graph": {"type": graph, "file": "data", "report_all": False},
        "noise": {"type": noise, "sigma_min": 1e-4, "sigma_max": 20.0},
        "sampling": {"predictor": "euler", "steps": 128, "noise_removal": True},
        "model": {
            "name": "tiny",
            "type": "ddit",
            "hidden_size": TINY["hidden"],
            "cond_dim": TINY["cond"],
            "length": TINY["length"],
            "n_blocks": TINY["n_blocks"],
            "n_heads": TINY["n_heads"],
            "scale_by_sigma": scale_by_sigma,
            "dropout": 0.1,
        },
    }


def radd_config(tokens: int, loss_type: str = "lambda_DCE") -> dict:
    """A RADD Hydra config (configs/config.yaml + configs/model/small_radd.yaml) with a tiny model."""
    return {
        "ngpus": 1,
        "tokens": tokens,
        "training": {"batch_size": 8, "ema": 0.9999, "loss_type": loss_type},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "model": {
            "name": "tiny_radd",
            "type": "ddit_wot",
            "hidden_size": TINY["hidden"],
            "cond_dim": TINY["cond"],
            "length": TINY["length"],
            "n_blocks": TINY["n_blocks"],
            "n_heads": TINY["n_heads"],
            "dropout": 0.02,
            "use_checkpoint": False,
            "dtype": "float16",
        },
    }


def mdlm_hub_config(states: int, time_conditioning: bool = False) -> dict:
    """The flat transformers config.json of MDLM's Hugging Face model (vocab_size counts the mask)."""
    return {
        "architectures": ["MDLM"],
        "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
        "model_type": "mdlm",
        "vocab_size": states,
        "model_length": TINY["length"],
        "hidden_dim": TINY["hidden"],
        "cond_dim": TINY["cond"],
        "n_blocks": TINY["n_blocks"],
        "n_heads": TINY["n_heads"],
        "dropout": 0.1,
        "time_conditioning": time_conditioning,
        "return_dict": False,
        "torch_dtype": "float32",
    }


def mdlm_run_config(time_conditioning: bool = False, ema: float = 0.9999, **overrides: object) -> dict:
    """MDLM's Hydra config (configs/config.yaml with model small, noise loglinear, data openwebtext), tiny model."""
    config = {
        "mode": "train",
        "diffusion": "absorbing_state",
        "backbone": "dit",
        "parameterization": "subs",
        "time_conditioning": time_conditioning,
        "T": 0,
        "subs_masking": False,
        "training": {"ema": ema, "antithetic_sampling": True, "sampling_eps": 1e-3},
        "data": {"train": "openwebtext", "valid": "wikitext103", "tokenizer_name_or_path": "gpt2"},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "model": {
            "name": "tiny",
            "type": "ddit",
            "hidden_size": TINY["hidden"],
            "cond_dim": TINY["cond"],
            "length": TINY["length"],
            "n_blocks": TINY["n_blocks"],
            "n_heads": TINY["n_heads"],
            "scale_by_sigma": True,
            "dropout": 0.1,
            "tie_word_embeddings": False,
        },
        "loader": {"batch_size": "${div_up:${.global_batch_size}, 2}"},  # an interpolation the loader never reads
        "wandb": {"tags": ["loglinear", "openwebtext"], "group": None},
    }
    config.update(overrides)
    return config


def write_hub(
    directory: Path, config: dict, weights: dict[str, Tensor], weights_file: str = "model.safetensors"
) -> Path:
    """PyTorchModelHubMixin's / transformers' files: config.json and model.safetensors or pytorch_model.bin."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if weights_file.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({name: tensor.contiguous() for name, tensor in weights.items()}, directory / weights_file)
    else:
        torch.save(weights, directory / weights_file)
    return directory


def write_hydra_run(
    directory: Path, config: dict, model: dict[str, Tensor], shadow: list[Tensor], yaml_text: str | None = None
) -> Path:
    """A SEDD/RADD run directory: .hydra/config.yaml and checkpoints-meta/checkpoint.pth as utils.save_checkpoint
    writes it ({"optimizer", "model", "ema": ExponentialMovingAverage.state_dict(), "step"})."""
    (directory / ".hydra").mkdir(parents=True, exist_ok=True)
    (directory / ".hydra" / "config.yaml").write_text(yaml_text if yaml_text is not None else yaml.safe_dump(config))
    (directory / "checkpoints-meta").mkdir(exist_ok=True)
    optimizer = {"state": {}, "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0, 1]}]}
    ema = {"decay": 0.9999, "num_updates": 17, "shadow_params": shadow}
    torch.save(
        {"optimizer": optimizer, "model": model, "ema": ema, "step": 17},
        directory / "checkpoints-meta" / "checkpoint.pth",
    )
    return directory


def parameters_only(weights: dict[str, Tensor]) -> list[Tensor]:
    """The parameters of a reference state dict in model.parameters() order (the rotary buffer left out)."""
    return [tensor for name, tensor in weights.items() if name != "rotary_emb.inv_freq"]


# A stand-in of OmegaConf's and transformers' classes for torch.save: same module and class names, same pickled
# state (DictConfig/nodes: __getstate__ = their __dict__ without the flags cache), so the .ckpt holds what MDLM's does.


class _Pickled:
    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:  # never called by the loader under test
        raise AssertionError("the checkpoint's own classes must not be used to load it")


def _fake_classes() -> dict[str, dict[str, type]]:
    def make(module: str, name: str) -> type:
        return type(name, (_Pickled,), {"__module__": module, "__qualname__": name})

    return {
        "omegaconf": {},
        "omegaconf.base": {
            "ContainerMetadata": make("omegaconf.base", "ContainerMetadata"),
            "Metadata": make("omegaconf.base", "Metadata"),
        },
        "omegaconf.dictconfig": {"DictConfig": make("omegaconf.dictconfig", "DictConfig")},
        "omegaconf.listconfig": {"ListConfig": make("omegaconf.listconfig", "ListConfig")},
        "omegaconf.nodes": {
            name: make("omegaconf.nodes", name)
            for name in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode")
        },
        "transformers": {},
        "transformers.models": {},
        "transformers.models.gpt2": {},
        "transformers.models.gpt2.tokenization_gpt2_fast": {
            "GPT2TokenizerFast": make("transformers.models.gpt2.tokenization_gpt2_fast", "GPT2TokenizerFast")
        },
        "tokenizers": {"Tokenizer": make("tokenizers", "Tokenizer"), "AddedToken": make("tokenizers", "AddedToken")},
    }


@contextlib.contextmanager
def fake_modules() -> Iterator[dict[str, dict[str, type]]]:
    """Install the stand-in modules in sys.modules while a checkpoint is written; removed afterwards, so that the
    load under test cannot import them."""
    classes = _fake_classes()
    saved = {name: sys.modules.get(name) for name in classes}
    for name, members in classes.items():
        module = types.ModuleType(name)
        for member, cls in members.items():
            setattr(module, member, cls)
        sys.modules[name] = module
    try:
        yield classes
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _omegaconf(value: object, classes: dict[str, dict[str, type]], parent: object = None) -> object:
    """value as OmegaConf would hold it: DictConfig/ListConfig with `_content` of value nodes holding `_val`."""
    import collections
    import typing

    if isinstance(value, (dict, list)):
        kind = "DictConfig" if isinstance(value, dict) else "ListConfig"
        module = "omegaconf.dictconfig" if isinstance(value, dict) else "omegaconf.listconfig"
        container = classes[module][kind]()
        metadata = classes["omegaconf.base"]["ContainerMetadata"]()
        metadata.__dict__.update(
            ref_type=typing.Any,
            object_type=dict if isinstance(value, dict) else list,
            optional=True,
            key=None,
            flags={},
            flags_root=False,
            resolver_cache=collections.defaultdict(dict),
            key_type=typing.Any,
            element_type=typing.Any,
        )
        container.__dict__.update(_metadata=metadata, _parent=parent)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        content = {key: _omegaconf(item, classes, container) for key, item in items}
        container._content = content if isinstance(value, dict) else list(content.values())
        return container
    node_kind = {bool: "BooleanNode", int: "IntegerNode", float: "FloatNode", str: "StringNode"}.get(
        type(value), "AnyNode"
    )
    node = classes["omegaconf.nodes"][node_kind]()
    metadata = classes["omegaconf.base"]["Metadata"]()
    metadata.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=None, flags={}, flags_root=False)
    node.__dict__.update(_metadata=metadata, _parent=parent, _val=value)
    return node


class _RunsOnLoad:
    """An object whose unpickling would call builtins.exec: a checkpoint must not be able to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def write_mdlm_checkpoint(
    file: Path, config: dict, weights: dict[str, Tensor], shadow: list[Tensor] | None, marker: Path
) -> Path:
    """A Lightning .ckpt of MDLM's Diffusion: state_dict under "backbone.", "ema" (when shadow is given),
    hyper_parameters {"config": DictConfig, "tokenizer": GPT2TokenizerFast}, Lightning's bookkeeping, and an
    object that would write `marker` if unpickling ran code."""
    with fake_modules() as classes:
        tokenizer = classes["transformers.models.gpt2.tokenization_gpt2_fast"]["GPT2TokenizerFast"]()
        inner = classes["tokenizers"]["Tokenizer"]()
        inner.__dict__.update(json=b'{"version": "1.0"}')
        tokenizer.__dict__.update(name_or_path="gpt2", _tokenizer=inner, init_kwargs={"model_max_length": 1024})
        checkpoint = {
            "epoch": 0,
            "global_step": 17,
            "pytorch-lightning_version": "2.2.1",
            "state_dict": {"backbone." + name: tensor for name, tensor in weights.items()},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 0}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val/nll'}": {"best_model_score": torch.tensor(3.2)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999)}]}],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {"config": _omegaconf(config, classes), "tokenizer": tokenizer},
            "sampler": {"random_state": None},
            "extra": _RunsOnLoad(marker),
        }
        if shadow is not None:
            checkpoint["ema"] = {"decay": 0.9999, "num_updates": 17, "shadow_params": shadow}
        torch.save(checkpoint, file)
    return file


def tokens_with_masks(batch: int, length: int, tokens: int, seed: int, mask_fraction: float = 0.5) -> Tensor:
    """Random clean tokens in [0, tokens) with each position replaced by the mask (index tokens) w.p. mask_fraction."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, tokens, (batch, length), generator=generator)
    masked = torch.rand(batch, length, generator=generator) < mask_fraction
    return torch.where(masked, torch.full_like(clean, tokens), clean)


def noise_levels(batch: int, seed: int) -> Tensor:
    """Random total noise levels sigma-bar in (0.05, 3.05), both sides of SEDD's 0.5 switch in esigm1."""
    return 0.05 + 3.0 * torch.rand(batch, generator=torch.Generator().manual_seed(seed))
