"""DiffusionModule.sampling_model: the samplers' wrapper says `positions=True` exactly when the network's forward
takes `where`, and a where-aware network (here a subclass computing its full output and selecting the rows)
gives the same samples as the plain network, for a denoiser (RADD) and a score (DiT)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import ctmc
import losses
import models
import samplers
from training.module import DiffusionModule


class WhereRADD(models.RADDDenoiser):
    def forward(self, x: Tensor, sigma: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        out = super().forward(x, sigma)
        return out if where is None else out[where]


class WhereDiT(models.DiT):
    def forward(self, x: Tensor, sigma: Tensor, where: Tensor | None = None) -> Tensor:
        out = super().forward(x, sigma)
        return out if where is None else out[where]


@pytest.mark.parametrize(
    ("plain", "aware", "loss"),
    [
        (models.RADDDenoiser, WhereRADD, losses.LambdaDCE),
        (models.DiT, WhereDiT, losses.ScoreEntropy),
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
        )
        torch.nn.init.normal_(module.ema.trunk.output_weight, std=0.5)  # a non-constant output
        model = module.sampling_model()
        assert isinstance(model, samplers.Denoiser if loss is losses.LambdaDCE else samplers.ConcreteScore)
        assert model.positions == (cls is aware) and model.log
        tokens[cls] = module.generate(3, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(tokens[plain], tokens[aware])
    assert bool((tokens[plain] < 9).all())
