"""models.from_pretrained on SEDD checkpoints against an independent plain-torch SEDD forward
(pretrained_reference.sedd_forward, written from SEDD's model/transformer.py): hub directories (model.safetensors,
pytorch_model.bin) and a training run directory (EMA weights), at every position, float64 to 1e-10 and float32 to
1e-4 of the output's scale; network.process against SEDD's noise_lib closed forms written in numpy."""

import math

import numpy as np
import pytest
import torch
import yaml
from pretrained_reference import (
    TINY,
    as_float64,
    noise_levels,
    parameters_only,
    random_weights,
    sedd_config,
    sedd_forward,
    tokens_with_masks,
    write_hub,
    write_hydra_run,
)

import ctmc
from models import DiT, PretrainedInfo, from_pretrained

TOKENS = 10
BATCH = 3


def _weights(states: int, seed: int) -> dict[str, torch.Tensor]:
    return random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], states, seed)


def _inputs(graph: str) -> tuple[torch.Tensor, torch.Tensor]:
    if graph == "absorb":
        x = tokens_with_masks(BATCH, TINY["length"], TOKENS, seed=2)
    else:
        x = torch.randint(0, TOKENS, (BATCH, TINY["length"]), generator=torch.Generator().manual_seed(2))
    return x, noise_levels(BATCH, seed=3)


def _check_equal(network: torch.nn.Module, weights: dict, x: torch.Tensor, sigma: torch.Tensor, scale: bool) -> None:
    """float32 to 1e-4 of the output's scale, then float64 to 1e-10, every position and state."""
    with torch.no_grad():
        reference = sedd_forward(weights, x, sigma, TINY["n_heads"], scale)
        torch.testing.assert_close(network(x, sigma), reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))
        reference = sedd_forward(as_float64(weights), x, sigma.double(), TINY["n_heads"], scale)
        torch.testing.assert_close(network.double()(x, sigma.double()), reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("graph", "noise", "scale_by_sigma"), [("absorb", "loglinear", True), ("uniform", "geometric", False)]
)
@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_hub_directory_equals_sedd_forward(tmp_path, graph, noise, scale_by_sigma, weights_file):
    """config.json + model.safetensors / pytorch_model.bin (absorb with scale_by_sigma; uniform without) -> a DiT in
    eval mode whose net(x, sigma) equals SEDD's forward(indices, sigma)."""
    states = TOKENS + 1 if graph == "absorb" else TOKENS
    weights = _weights(states, seed=1)
    config = sedd_config(TOKENS, graph, noise, scale_by_sigma)
    network = from_pretrained(write_hub(tmp_path, config, weights, weights_file))
    assert isinstance(network, DiT) and not network.training
    assert network.vocab_size == states and network.absorbing_parameterization == scale_by_sigma
    x, sigma = _inputs(graph)
    _check_equal(network, weights, x, sigma, scale_by_sigma)
    assert network.pretrained == PretrainedInfo(
        layout="sedd",
        path=str(tmp_path),
        weights=str(tmp_path / weights_file),
        ema=False,
        vocab_size=TOKENS,
        seq_len=TINY["length"],
        tokenizer=None,
        output="log_score",
        time_conditioned=True,
        loss="losses.ScoreEntropy",
        config=config,
    )


def test_hub_directory_without_the_rotary_buffer(tmp_path):
    """The rotary_emb.inv_freq buffer is optional (it is a function of the head size): same outputs without it."""
    weights = random_weights(TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], TOKENS + 1, 1, False)
    network = from_pretrained(write_hub(tmp_path, sedd_config(TOKENS), weights))
    x, sigma = _inputs("absorb")
    _check_equal(network, weights, x, sigma, scale=True)


def test_run_directory_loads_the_ema_weights(tmp_path):
    """.hydra/config.yaml + checkpoints-meta/checkpoint.pth: the network has the EMA shadow parameters (as SEDD's
    load_model_local copies them), not the raw model weights; the YAML's 1e-4 is read as OmegaConf reads it."""
    raw, ema = _weights(TOKENS, seed=1), _weights(TOKENS, seed=5)
    config = sedd_config(TOKENS, "uniform", "geometric", scale_by_sigma=False)
    text = yaml.safe_dump(config).replace("sigma_min: 0.0001", "sigma_min: 1e-4")
    assert "sigma_min: 1e-4" in text
    network = from_pretrained(write_hydra_run(tmp_path, config, raw, parameters_only(ema), yaml_text=text))
    x, sigma = _inputs("uniform")
    _check_equal(network, ema, x, sigma, scale=False)
    with torch.no_grad():
        raw_output = sedd_forward(as_float64(raw), x, sigma.double(), TINY["n_heads"], False)
        assert (network(x, sigma.double()) - raw_output).abs().max() > 0.1
    assert network.pretrained.ema and network.pretrained.weights == str(
        tmp_path / "checkpoints-meta" / "checkpoint.pth"
    )
    assert network.process.schedule.sigma_min == 1e-4


def test_process_equals_sedd_noise_formulas(tmp_path):
    """network.process: absorb -> ctmc.Absorbing(V), uniform -> ctmc.Uniform(V); LogLinearNoise (eps 1e-3) and
    GeometricNoise(1e-4, 20) closed forms, total and rate, written in numpy, relative 1e-12 at several t."""
    t = np.array([0.0, 1e-4, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0])
    eps, low, high = 1e-3, 1e-4, 20.0
    expected = {
        "loglinear": (-np.log1p(-(1 - eps) * t), (1 - eps) / (1 - (1 - eps) * t)),
        "geometric": (low ** (1 - t) * high**t, low ** (1 - t) * high**t * (math.log(high) - math.log(low))),
    }
    for graph, noise in [("absorb", "loglinear"), ("uniform", "geometric")]:
        states = TOKENS + 1 if graph == "absorb" else TOKENS
        directory = write_hub(
            tmp_path / graph, sedd_config(TOKENS, graph, noise, graph == "absorb"), _weights(states, 1)
        )
        process = from_pretrained(directory).process
        assert isinstance(process.rate_matrix, ctmc.Absorbing if graph == "absorb" else ctmc.Uniform)
        assert process.num_states == states
        times = torch.tensor(t, dtype=torch.float64)
        np.testing.assert_allclose(process.total(times).numpy(), expected[noise][0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(process.sigma(times).numpy(), expected[noise][1], rtol=1e-12, atol=0)
