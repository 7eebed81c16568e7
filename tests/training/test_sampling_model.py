"""DiffusionModule.sampling_model: the samplers' wrapper says `positions=True` exactly when the network's forward
takes `where`, and the where-aware networks (models.RADDDenoiser and models.DiT, which run their head on the
asked rows only) give the same samples as the same weights behind a forward without `where` (full outputs,
selected by the sampler), for a denoiser (RADD) and a score (DiT)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import ctmc
import losses
import models
import samplers
from training.module import DiffusionModule


class FullRADD(models.RADDDenoiser):
    """The same network without `where` in its forward: full (B, L, V) outputs only."""

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        return super().forward(x, sigma)


class FullDiT(models.DiT):
    """The same network without `where` in its forward: full (B, L, n) outputs only."""

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        return super().forward(x, sigma)


@pytest.mark.parametrize(
    ("plain", "aware", "loss"),
    [
        (FullRADD, models.RADDDenoiser, losses.LambdaDCE),
        (FullDiT, models.DiT, losses.ScoreEntropy),
    ],
)
def test_positions_flag_follows_the_forward_signature_and_keeps_the_samples(plain, aware, loss):
    tokens = {}
    for cls in (plain, aware):
        options = {"cond_dim": 8} if issubclass(cls, models.DiT) else {}
        torch.manual_seed(0)
        module = DiffusionModule(
            9,
            network=lambda n, cls=cls, options=options: cls(n, hidden_size=16, num_layers=1, num_heads=2, **options),
            loss=loss,
            rate_matrix=ctmc.Absorbing,
            packed_outputs=cls is aware,  # the training side refuses a forward without `where` otherwise
        )
        torch.nn.init.normal_(module.ema.trunk.output_weight, std=0.5)  # a non-constant output
        model = module.sampling_model()
        assert isinstance(model, samplers.Denoiser if loss is losses.LambdaDCE else samplers.ConcreteScore)
        assert model.positions == (cls is aware) and model.log
        tokens[cls] = module.generate(3, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(tokens[plain], tokens[aware])
    assert bool((tokens[plain] < 9).all())
