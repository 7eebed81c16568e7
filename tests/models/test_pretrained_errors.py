"""models.from_pretrained refuses bad checkpoints with one line naming the file and the key: missing files, an
unknown or ambiguous layout, missing / unexpected / mis-shaped weights, unsupported options, a broken EMA list,
a file torch.load(weights_only=True) cannot read. Reference: the expected message fragments."""

from pathlib import Path

import pytest
import torch
from pretrained_reference import (
    TINY,
    mdlm_run_config,
    parameters_only,
    radd_config,
    random_weights,
    sedd_config,
    write_hub,
    write_hydra_run,
    write_mdlm_checkpoint,
)

import models.pretrained.loader as loader
from models import from_pretrained
from models.pretrained import CheckpointError
from models.pretrained.sedd import SEDDLayout

TOKENS = 10


def _sedd_weights(states: int = TOKENS + 1) -> dict[str, torch.Tensor]:
    return random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], states, seed=1)


def _raises(error: type[Exception], path: Path, *fragments: str) -> None:
    """from_pretrained(path) raises `error` with a one-line message containing every fragment."""
    with pytest.raises(error) as caught:
        from_pretrained(path)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_path_and_missing_config(tmp_path):
    """A path that is not there; a directory without config.json (nor .hydra/config.yaml)."""
    _raises(FileNotFoundError, tmp_path / "nowhere", "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    _raises(CheckpointError, tmp_path / "empty", str(tmp_path / "empty"), "is a directory without config.json")


def test_missing_weights_file(tmp_path):
    """A hub directory with config.json and no weights; a run directory without checkpoints-meta/checkpoint.pth."""
    config = sedd_config(TOKENS)
    write_hub(tmp_path / "hub", config, _sedd_weights())
    (tmp_path / "hub" / "model.safetensors").unlink()
    _raises(FileNotFoundError, tmp_path / "hub", "model.safetensors", "pytorch_model.bin")
    write_hydra_run(tmp_path / "run", config, _sedd_weights(), parameters_only(_sedd_weights()))
    (tmp_path / "run" / "checkpoints-meta" / "checkpoint.pth").unlink()
    _raises(FileNotFoundError, tmp_path / "run", "checkpoint.pth")


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ({"model": {"type": "transformer"}}, ["config.json", "unknown layout", "'model.type' is 'transformer'"]),
        ({"model_type": "bert", "hidden_size": 8}, ["config.json", "unknown layout", "'model_type' is 'bert'"]),
    ],
)
def test_unknown_layout(tmp_path, config, fragments):
    """A config.json no layout claims: the message names the file, the identifying key and the known layouts."""
    write_hub(tmp_path, config, {"w": torch.zeros(1)})
    _raises(CheckpointError, tmp_path, *fragments, "SEDD", "RADD", "MDLM")


def test_ambiguous_layout(tmp_path, monkeypatch):
    """Two layouts claiming the same checkpoint: refused, never one picked."""
    write_hub(tmp_path, sedd_config(TOKENS), _sedd_weights())
    monkeypatch.setattr(loader, "LAYOUTS", (SEDDLayout(), SEDDLayout()))
    _raises(CheckpointError, tmp_path, "ambiguous layout", "config.json")


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda w: w.pop("blocks.1.attn_qkv.weight"), ["'blocks.1.attn_qkv.weight' is missing"]),
        (lambda w: w.update({"blocks.0.extra.weight": torch.zeros(2)}), ["unexpected key 'blocks.0.extra.weight'"]),
        (
            lambda w: w.update({"blocks.0.mlp.0.bias": torch.zeros(5)}),
            ["'blocks.0.mlp.0.bias' has shape (5,)", "(64,)"],
        ),
        (lambda w: w.update({"rotary_emb.inv_freq": 2 * w["rotary_emb.inv_freq"]}), ["'rotary_emb.inv_freq'", "base"]),
    ],
)
def test_bad_weights(tmp_path, edit, fragments):
    """A missing, unexpected or mis-shaped weight, and RoPE frequencies of another base, name model.safetensors."""
    weights = _sedd_weights()
    edit(weights)
    write_hub(tmp_path, sedd_config(TOKENS), weights)
    _raises(CheckpointError, tmp_path, str(tmp_path / "model.safetensors"), *fragments)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda c: c["graph"].update(type="random"), ["'graph.type' is 'random'", "'absorb', 'uniform'"]),
        (lambda c: c["noise"].update(type="cosine"), ["'noise.type' is 'cosine'", "'loglinear', 'geometric'"]),
        (lambda c: c["model"].pop("n_heads"), ["'model.n_heads' is missing"]),
        (lambda c: c["model"].update(hidden_size="16"), ["'model.hidden_size' must be an int, got '16'"]),
        (lambda c: c["model"].update(n_heads=3), ["cannot be built", "hidden_size"]),
        (lambda c: c.update(graph={"type": "uniform"}), ["'model.scale_by_sigma' is true with graph 'uniform'"]),
    ],
)
def test_bad_sedd_config(tmp_path, edit, fragments):
    """Unsupported graph or noise, a missing or mistyped key, sizes no network has: the message names config.json."""
    config = sedd_config(TOKENS)
    edit(config)
    write_hub(tmp_path, config, _sedd_weights())
    _raises(CheckpointError, tmp_path, str(tmp_path / "config.json"), *fragments)


def test_unsupported_radd_loss(tmp_path):
    """A RADD run trained with a fixed-order autoregressive loss has no loss here."""
    weights = random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], None, TOKENS + 1, seed=1)
    write_hub(tmp_path, radd_config(TOKENS, "ar_forward"), weights)
    _raises(CheckpointError, tmp_path, "config.json", "'training.loss_type' is 'ar_forward'")


def test_broken_ema(tmp_path):
    """A run directory whose EMA list is one tensor short, or has a mis-shaped entry: names ema.shadow_params."""
    shadow = parameters_only(_sedd_weights())
    write_hydra_run(tmp_path / "short", sedd_config(TOKENS), _sedd_weights(), shadow[:-1])
    _raises(CheckpointError, tmp_path / "short", "checkpoint.pth", "'ema.shadow_params' holds")
    shadow[3] = torch.zeros(1)
    write_hydra_run(tmp_path / "shape", sedd_config(TOKENS), _sedd_weights(), shadow)
    _raises(CheckpointError, tmp_path / "shape", "checkpoint.pth", "'ema.shadow_params' entry 3", "shape (1,)")


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"parameterization": "d3pm"}, ["'hyper_parameters.config.parameterization' is 'd3pm'"]),
        ({"T": 1000}, ["'hyper_parameters.config.T' is 1000"]),
        (
            {"data": {"tokenizer_name_or_path": "bert-base-uncased"}},
            ["'hyper_parameters.config.data.tokenizer_name_or_path' is 'bert-base-uncased'"],
        ),
        ({"noise": {"type": "cosine"}}, ["'hyper_parameters.config.noise.type' is 'cosine'"]),
    ],
)
def test_unsupported_mdlm_options(tmp_path, overrides, fragments):
    """MDLM options this project has no counterpart for: named with their place in the .ckpt."""
    weights = _sedd_weights()
    file = write_mdlm_checkpoint(tmp_path / "run.ckpt", mdlm_run_config(**overrides), weights, None, tmp_path / "m")
    _raises(CheckpointError, file, str(file), *fragments)


def test_file_that_is_not_a_checkpoint(tmp_path):
    """A file torch.save did not write; a torch.save file that is not a Lightning checkpoint of a known layout."""
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    _raises(CheckpointError, tmp_path / "notes.ckpt", "notes.ckpt", "(not a PyTorch archive)")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    _raises(CheckpointError, tmp_path / "other.ckpt", "other.ckpt", "unknown layout", "['state_dict']")


def test_unreadable_weights_name_the_file(tmp_path):
    """pytorch_model.bin holding a pickled object torch.load(weights_only=True) refuses: one line naming the file."""
    write_hub(tmp_path, sedd_config(TOKENS), {"w": torch.zeros(1)}, "pytorch_model.bin")
    torch.save({"weights": Path("x")}, tmp_path / "pytorch_model.bin")
    _raises(CheckpointError, tmp_path, "pytorch_model.bin", "torch.load(weights_only=True) cannot read it")


def test_bad_weights_are_located_in_run_and_lightning_files(tmp_path):
    """A missing weight in checkpoint.pth's "model" or in a .ckpt's "state_dict" is named with that location."""
    weights = _sedd_weights()
    shadow = parameters_only(weights)
    del weights["blocks.0.mlp.2.bias"]
    write_hydra_run(tmp_path / "run", sedd_config(TOKENS), weights, shadow)
    _raises(CheckpointError, tmp_path / "run", "checkpoint.pth", "key 'model.blocks.0.mlp.2.bias' is missing")
    file = write_mdlm_checkpoint(tmp_path / "run.ckpt", mdlm_run_config(), weights, shadow, tmp_path / "marker")
    _raises(CheckpointError, file, "run.ckpt", "key 'state_dict.backbone.blocks.0.mlp.2.bias' is missing")
