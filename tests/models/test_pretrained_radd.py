"""models.from_pretrained on RADD checkpoints against an independent plain-torch RADD forward
(pretrained_reference.radd_forward, written from RADD's model/transformer.py): a hub directory and a training run
directory (EMA weights), log-probabilities over the clean tokens at every position (masked or not), float64 to
1e-10 and float32 to 1e-4; training.loss_type -> this project's loss; the absorbing process with LogLinear(1e-3)."""

from pathlib import Path

import pytest
import torch
from pretrained_reference import (
    TINY,
    as_float64,
    parameters_only,
    radd_config,
    radd_forward,
    random_weights,
    tokens_with_masks,
    write_hub,
    write_hydra_run,
)

import ctmc
from models import RADDDenoiser, from_pretrained
from models.pretrained.radd import RADDLayout

TOKENS = 10


def _weights(seed: int) -> dict[str, torch.Tensor]:
    return random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], None, TOKENS + 1, seed)


def _check_equal(network: torch.nn.Module, weights: dict, x: torch.Tensor) -> None:
    """RADD's first `tokens` columns (its log-softmaxed ones) vs ours: float32 to 1e-4, float64 to 1e-10."""
    with torch.no_grad():
        reference = radd_forward(weights, x, TINY["n_heads"])[..., :-1]
        torch.testing.assert_close(network(x), reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))
        reference = radd_forward(as_float64(weights), x, TINY["n_heads"])[..., :-1]
        torch.testing.assert_close(network.double()(x), reference, rtol=1e-10, atol=1e-10)


def test_hub_directory_equals_radd_forward(tmp_path):
    """config.json + model.safetensors -> RADDDenoiser(V) whose net(x) equals RADD's log-probabilities."""
    weights = _weights(seed=1)
    network = from_pretrained(write_hub(tmp_path, radd_config(TOKENS), weights))
    assert isinstance(network, RADDDenoiser) and not network.training and network.vocab_size == TOKENS
    _check_equal(network, weights, tokens_with_masks(3, TINY["length"], TOKENS, seed=2))
    info = network.pretrained
    assert (info.layout, info.output, info.time_conditioned, info.loss) == (
        "radd",
        "log_probs",
        False,
        "losses.LambdaDCE",
    )
    assert (info.vocab_size, info.seq_len, info.ema) == (TOKENS, TINY["length"], False)
    assert isinstance(network.process.rate_matrix, ctmc.Absorbing) and network.process.num_states == TOKENS + 1
    assert isinstance(network.process.schedule, ctmc.LogLinear) and network.process.schedule.eps == 1e-3


def test_run_directory_loads_the_ema_weights(tmp_path):
    """.hydra/config.yaml + checkpoints-meta/checkpoint.pth: the EMA shadow parameters, not the raw model weights."""
    raw, ema = _weights(seed=1), _weights(seed=7)
    network = from_pretrained(write_hydra_run(tmp_path, radd_config(TOKENS, "t_DCE"), raw, parameters_only(ema)))
    x = tokens_with_masks(3, TINY["length"], TOKENS, seed=3)
    _check_equal(network, ema, x)
    with torch.no_grad():
        assert (network(x) - radd_forward(as_float64(raw), x, TINY["n_heads"])[..., :-1]).abs().max() > 0.1
    assert network.pretrained.ema and network.pretrained.loss == "losses.TDCE"


@pytest.mark.parametrize(
    ("loss_type", "loss"),
    [
        ("t_DCE", "losses.TDCE"),
        ("t_DSE", "losses.TDCE"),
        ("lambda_DCE", "losses.LambdaDCE"),
        ("k_DCE", "losses.LambdaDCE"),
    ],
)
def test_loss_type_names_this_projects_loss(loss_type, loss):
    """RADD's training.loss_type -> the loss with the same objective (models.pretrained.radd.LOSSES)."""
    assert RADDLayout().plan(radd_config(TOKENS, loss_type), Path("config.json")).info.loss == loss
