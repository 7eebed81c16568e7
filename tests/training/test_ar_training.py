"""The autoregressive objective on the shared training path (training/autoregressive.py, base_module.py) and
the prior term in diffusion validation, through Lightning's own validation loop on a tiny corpus.

References: the exact cross-entropy computed by hand, one next-token distribution per prefix
(ARTransformer.next_token_log_probs on the truncated block, a separate code path from the teacher-forced
logits the module uses); the closed form eps log V of the absorbing chain's prior term per token.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from fit_helpers import TEXT

import ctmc
import losses
import models
from training.autoregressive import ARModule
from training.base_module import fused_adamw_supported
from training.datamodule import TextDataModule
from training.module import DiffusionModule


def tiny_data(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    data = TextDataModule(paths=str(path), tokenizer="char", seq_len=8, batch_size=4, cache_dir=str(tmp_path / "c"))
    data.prepare_data()
    data.setup("validate")
    return data


def trainer(tmp_path):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                      default_root_dir=str(tmp_path))


def tiny_ar(vocab_size: int) -> models.ARTransformer:
    return models.ARTransformer(vocab_size, hidden_size=16, num_layers=1, num_heads=2, max_length=16).double()


def test_ar_val_bits_per_token_is_the_exact_cross_entropy(tmp_path):
    torch.manual_seed(0)
    data = tiny_data(tmp_path)
    module = ARModule(data.vocab_size, network=tiny_ar, ema_decay=0.0)
    with torch.no_grad():  # make the EMA differ from the network: validation must read the EMA
        for p in module.ema.parameters():
            p.add_(0.1 * torch.randn_like(p))
    metrics = trainer(tmp_path).validate(module, datamodule=data, verbose=False)[0]
    blocks = torch.cat([batch for _, batch in zip(range(2), data.val_dataloader(), strict=False)])
    nats = 0.0
    with torch.no_grad():
        for k in range(blocks.shape[1]):  # -log p(x_k | x_<k), one prefix at a time
            log_probs = module.ema.next_token_log_probs(blocks[:, :k])
            nats -= float(log_probs.gather(-1, blocks[:, k : k + 1]).sum())
    expected = nats / blocks.numel() / math.log(2.0)
    assert math.isclose(metrics["val/bits_per_token"], expected, rel_tol=1e-6)
    assert module.validation_result["tokens"] == blocks.numel()
    assert "val/prior_nats_per_token" not in metrics  # an exact likelihood has no prior term


def test_diffusion_validation_bound_includes_the_prior_term(tmp_path):
    torch.manual_seed(0)
    data = tiny_data(tmp_path)
    network = lambda n: models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=16)  # noqa: E731
    module = DiffusionModule(data.vocab_size, network=network, val_time_samples=2)
    metrics = trainer(tmp_path).validate(module, datamodule=data, verbose=False)[0]
    eps = 1e-3  # ctmc.LogLinear's default: e^{-total(1)} = eps, the KL is eps log V per token (losses/prior.py)
    assert math.isclose(metrics["val/prior_nats_per_token"], eps * math.log(data.vocab_size), rel_tol=1e-4)
    blocks = torch.cat([batch for _, batch in zip(range(2), data.val_dataloader(), strict=False)])
    with torch.no_grad():
        without = module.negative_elbo_draws(blocks).mean(dim=1).sum()
    prior = losses.PriorKL(ctmc.ForwardProcess(ctmc.Absorbing(data.vocab_size), ctmc.LogLinear()))(blocks).sum()
    expected = float(without + prior) / blocks.numel() / math.log(2.0)
    assert math.isclose(metrics["val/bits_per_token"], expected, rel_tol=1e-5)
    assert float(prior) > 0  # the bound moved by the prior term


def test_d3pm_loss_holds_its_prior_and_gets_none_added():
    assert losses.D3PMLoss.includes_prior and not losses.ScoreEntropy.includes_prior
    module = DiffusionModule(11, network=lambda n: models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8),
                             rate_matrix=ctmc.Uniform, loss=losses.D3PMLoss)
    assert torch.equal(module.prior_nats(torch.zeros(3, 4, dtype=torch.long)), torch.zeros(3, dtype=torch.float64))


def test_ar_module_trains_with_the_shared_optimiser_and_ema(tmp_path):
    torch.manual_seed(0)
    data = tiny_data(tmp_path)
    module = ARModule(data.vocab_size, network=lambda v: models.ARTransformer(v, hidden_size=16, num_layers=1,
                                                                             num_heads=2, max_length=16),
                      lr=1e-2, warmup_steps=0, ema_decay=0.5)
    before = [p.detach().clone() for p in module.ema.parameters()]
    fit = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, max_steps=3,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    fit.fit(module, datamodule=data)
    optimizer = fit.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True  # fused on CPU
    assert any(not torch.equal(a, b) for a, b in zip(before, module.ema.parameters(), strict=True))
    assert fused_adamw_supported(list(module.parameters()))
    assert not fused_adamw_supported([torch.zeros(2, dtype=torch.long)])


def test_ar_module_rejects_a_network_without_nll():
    with pytest.raises(TypeError, match="autoregressive model with nll"):
        ARModule(11, network=lambda v: models.DiT(v, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8))
