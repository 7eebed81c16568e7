"""models.from_pretrained on MDLM checkpoints against an independent plain-torch MDLM forward
(pretrained_reference.mdlm_subs_forward: MDLM's models/dit.py backbone and diffusion.py's SUBS parameterisation):
the Hugging Face directory (with and without time conditioning) and a Lightning .ckpt (EMA and raw weights), at
every position (masked: the log-probabilities; unmasked: the carry-over), float64 to 1e-10 and float32 to 1e-4. The
.ckpt holds pickled OmegaConf and tokenizer objects (and one that would run code): it loads without running any."""

import pytest
import torch
from pretrained_reference import (
    TINY,
    as_float64,
    mdlm_hub_config,
    mdlm_run_config,
    mdlm_subs_forward,
    noise_levels,
    parameters_only,
    random_weights,
    tokens_with_masks,
    write_hub,
    write_mdlm_checkpoint,
)

import ctmc
import losses
import samplers
from models import MDLMDenoiser, from_pretrained

TOKENS = 10
BATCH = 3


def _weights(seed: int, with_rotary: bool = True) -> dict[str, torch.Tensor]:
    return random_weights(
        TINY["hidden"], TINY["n_heads"], TINY["n_blocks"], TINY["cond"], TOKENS + 1, seed, with_rotary
    )


def _check_equal(
    network: torch.nn.Module, weights: dict, x: torch.Tensor, sigma: torch.Tensor, conditioned: bool
) -> None:
    """MDLM's SUBS output without its mask column vs ours, at every position: float32 to 1e-4, float64 to 1e-10.
    Without time conditioning MDLM feeds sigma = 0 to its backbone, and ours ignores the sigma it is given."""
    reference_sigma = sigma if conditioned else torch.zeros_like(sigma)
    with torch.no_grad():
        reference = mdlm_subs_forward(weights, x, reference_sigma, TINY["n_heads"], mask_index=TOKENS)[..., :-1]
        masked = x == TOKENS
        scale = float(reference[masked].abs().max())
        torch.testing.assert_close(network(x, sigma), reference, rtol=1e-4, atol=1e-4 * scale)
        reference = mdlm_subs_forward(as_float64(weights), x, reference_sigma.double(), TINY["n_heads"], TOKENS)
        torch.testing.assert_close(network.double()(x, sigma.double()), reference[..., :-1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("with_rotary", [True, False])
def test_hub_directory_equals_mdlm_subs_forward(tmp_path, time_conditioning, with_rotary):
    """config.json (model_type "mdlm") + model.safetensors under "backbone." -> MDLMDenoiser(V) equal to MDLM."""
    weights = _weights(seed=1, with_rotary=with_rotary)
    hub_weights = {"backbone." + name: tensor for name, tensor in weights.items()}
    network = from_pretrained(write_hub(tmp_path, mdlm_hub_config(TOKENS + 1, time_conditioning), hub_weights))
    assert isinstance(network, MDLMDenoiser) and not network.training
    assert network.vocab_size == TOKENS and network.time_conditioning == time_conditioning
    x, sigma = tokens_with_masks(BATCH, TINY["length"], TOKENS, seed=2), noise_levels(BATCH, seed=3)
    _check_equal(network, weights, x, sigma, time_conditioning)
    info = network.pretrained
    assert (info.layout, info.output, info.loss, info.ema) == ("mdlm", "log_probs", "losses.MDLMNELBO", False)
    assert (info.vocab_size, info.seq_len, info.time_conditioned) == (TOKENS, TINY["length"], time_conditioning)
    assert isinstance(network.process.rate_matrix, ctmc.Absorbing) and network.process.num_states == TOKENS + 1
    assert isinstance(network.process.schedule, ctmc.LogLinear) and network.process.schedule.eps == 1e-3


def test_lightning_checkpoint_loads_the_ema_weights_without_running_code(tmp_path):
    """A .ckpt with state_dict (raw), ema (shadow params) and pickled OmegaConf config / tokenizer: the EMA
    weights are loaded (as MDLM's on_load_checkpoint + ema.copy_to); the object that would run code does not."""
    raw, ema = _weights(seed=1), _weights(seed=9)
    marker = tmp_path / "code-ran"
    file = write_mdlm_checkpoint(tmp_path / "mdlm.ckpt", mdlm_run_config(), raw, parameters_only(ema), marker)
    network = from_pretrained(file)
    assert not marker.exists()
    x, sigma = tokens_with_masks(BATCH, TINY["length"], TOKENS, seed=4), noise_levels(BATCH, seed=5)
    _check_equal(network, ema, x, sigma, conditioned=False)
    with torch.no_grad():
        raw_output = mdlm_subs_forward(
            as_float64(raw), x, torch.zeros(BATCH, dtype=torch.float64), TINY["n_heads"], TOKENS
        )
        assert (network(x)[x == TOKENS] - raw_output[..., :-1][x == TOKENS]).abs().max() > 0.1
    info = network.pretrained
    assert info.ema and info.tokenizer == "gpt2" and info.weights == str(file)
    assert info.config == mdlm_run_config()  # the pickled DictConfig (nested dicts, a list, None) read back as data


def test_lightning_checkpoint_without_ema_loads_the_raw_weights(tmp_path):
    """training.ema = 0 (MDLM then keeps no EMA): the state_dict's weights, with time conditioning read from it."""
    raw = _weights(seed=2)
    config = mdlm_run_config(time_conditioning=True, ema=0.0)
    network = from_pretrained(write_mdlm_checkpoint(tmp_path / "raw.ckpt", config, raw, None, tmp_path / "marker"))
    x, sigma = tokens_with_masks(BATCH, TINY["length"], TOKENS, seed=6), noise_levels(BATCH, seed=7)
    _check_equal(network, raw, x, sigma, conditioned=True)
    assert not network.pretrained.ema and network.pretrained.time_conditioned


def test_output_feeds_the_mdlm_loss(tmp_path):
    """The loaded denoiser's output is what losses.MDLMNELBO reads: (B, L, V) log-probabilities over clean tokens;
    the loss on the loaded process is finite and equals its formula w(t) sum_masked -log p(x0) (float64)."""
    weights = {"backbone." + name: tensor for name, tensor in _weights(seed=1).items()}
    network = from_pretrained(write_hub(tmp_path, mdlm_hub_config(TOKENS + 1), weights)).double()
    generator = torch.Generator().manual_seed(8)
    x0 = torch.randint(0, TOKENS, (BATCH, TINY["length"]), generator=generator)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x_t = network.process.sample(x0, t[:, None], generator=generator)
    loss = losses.MDLMNELBO(network.process)
    with torch.no_grad():
        log_probs = network(x_t)
        value = loss(log_probs, x0, x_t, t)
    total = network.process.total(t)
    weight = network.process.sigma(t) * torch.exp(-total) / -torch.expm1(-total)
    nll = -(log_probs.gather(-1, x0[..., None]).squeeze(-1) * (x_t == TOKENS)).sum(-1)
    torch.testing.assert_close(value, weight * nll, rtol=1e-12, atol=0)


def test_loaded_denoiser_drives_a_sampler(tmp_path):
    """samplers.Denoiser(net, log=True, positions=True) with the loaded process: a sampler returns clean tokens."""
    weights = {"backbone." + name: tensor for name, tensor in _weights(seed=1).items()}
    network = from_pretrained(write_hub(tmp_path, mdlm_hub_config(TOKENS + 1), weights))
    sampler = samplers.EulerSampler(network.process, steps=4)
    model = samplers.Denoiser(network, log=True, positions=True)
    with torch.no_grad():
        tokens = sampler.sample(model, BATCH, TINY["length"], generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (BATCH, TINY["length"]) and 0 <= int(tokens.min()) and int(tokens.max()) < TOKENS
