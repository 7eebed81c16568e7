"""The training and validation paths ask the network only for the positions the loss reads (`where`).

Reference: the same path with packed_outputs=False (the full network output), which must give the same
negative-ELBO draws and the same trained weights; a spy network checks what was asked for.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from test_ar_training import tiny_data

import ctmc
import losses
import models
from evaluation.bounds import sequence_negative_elbo
from training.module import DiffusionModule


class Spy(torch.nn.Module):
    """Wraps a network and records the `where` of every call."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.calls: list[torch.Tensor | None] = []

    def forward(self, x, sigma, where=None):
        self.calls.append(where)
        return self.network(x, sigma, where=where)


@pytest.mark.parametrize("estimator", [None, "masked_count"])
@pytest.mark.parametrize("loss_name", ["ScoreEntropy", "LambdaDCE"])
def test_negative_elbo_draws_are_the_same_packed_and_full(loss_name, estimator):
    torch.manual_seed(0)
    vocab = 11
    process = ctmc.ForwardProcess(ctmc.Absorbing(vocab), ctmc.LogLinear())
    loss = getattr(losses, loss_name)(process)
    if loss.time_independent:
        network = models.RADDDenoiser(vocab, hidden_size=16, num_layers=1, num_heads=2, max_length=8)
    else:
        network = models.DiT(vocab + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=8,
                             absorbing_parameterization=True)
    spy = Spy(network.double())
    counter = losses.MaskedCountEstimator(process) if estimator else None
    x0 = torch.randint(0, vocab, (3, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        packed = sequence_negative_elbo(loss, spy, x0, 4, 5, counter)
        assert spy.calls[-1] is not None and not bool(spy.calls[-1].all())  # only the masked positions
        full = sequence_negative_elbo(loss, spy, x0, 4, 5, counter, packed=False)
        assert spy.calls[-1] is None
    torch.testing.assert_close(packed, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss_name", ["ScoreEntropy", "LambdaDCE"])
def test_training_packed_and_full_reach_the_same_weights(loss_name, tmp_path):
    data = tiny_data(tmp_path)
    weights = {}
    for packed in (True, False):
        torch.manual_seed(0)
        if loss_name == "ScoreEntropy":
            def network(n):
                return models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=16,
                                  absorbing_parameterization=True)
        else:
            def network(n):
                return models.RADDDenoiser(n, hidden_size=16, num_layers=1, num_heads=2, max_length=16)
        module = DiffusionModule(data.vocab_size, network=network, loss=getattr(losses, loss_name), lr=1e-2,
                                 warmup_steps=0, packed_outputs=packed)
        initial = [p.detach().clone() for p in module.network.parameters()]
        fit = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, max_steps=3,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        fit.fit(module, datamodule=data)
        weights[packed] = [p.detach().clone() for p in module.network.parameters()]
        assert any(not torch.equal(a, b) for a, b in zip(initial, weights[packed], strict=True))  # it trained
    for a, b in zip(weights[True], weights[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_network_without_where_needs_packed_outputs_off():
    class Plain(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.network = models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8)

        def forward(self, x, sigma):
            return self.network(x, sigma)

    with pytest.raises(ValueError, match=r"Plain.forward takes no `where`; set model.packed_outputs=false"):
        DiffusionModule(11, network=Plain)
    assert not DiffusionModule(11, network=Plain, packed_outputs=False).packed_outputs
