"""training.module.DiffusionModule with a block diffusion network and loss (models.BlockDenoiser,
losses.BlockDiffusionLoss): the estimators it picks, and its samples block by block.

References: samplers.BlockSampler called directly on the module's EMA network with the same generator; the
estimator choices written out (a clipped objective is only part of the bound, so the masked-count estimator,
which estimates the whole bound, is refused for training and "auto" uses the objective's own times).
"""

from __future__ import annotations

import pytest
import torch

import ctmc
import losses
import models
import samplers
from training.module import DiffusionModule, largest_divisor

VOCAB = 7


def module(clip: tuple[float, float] | None = None, train_estimator: str = "auto") -> DiffusionModule:
    torch.manual_seed(0)
    return DiffusionModule(
        VOCAB,
        network=lambda states: models.BlockDenoiser(states, 16, 1, 2, 16, block_size=2),
        loss=lambda process: losses.BlockDiffusionLoss(process, 2, clip=clip),
        train_estimator=train_estimator,
        ema_decay=0.0,
    )


def test_estimators_of_a_full_and_a_clipped_block_loss():
    assert isinstance(module().train_estimator, losses.MaskedCountEstimator)
    clipped = module(clip=(0.3, 0.8))
    assert clipped.train_estimator is None and isinstance(clipped.val_estimator, losses.MaskedCountEstimator)
    assert clipped.loss.bound().clip is None  # validation estimates the full-range bound
    with pytest.raises(ValueError, match=r"model\.train_estimator=masked_count estimates the full bound"):
        module(clip=(0.3, 0.8), train_estimator="masked_count")


def test_generate_draws_block_by_block_with_the_module_sampler():
    trained = module()
    tokens = trained.generate(3, 8, generator=torch.Generator().manual_seed(4))
    inner = samplers.EulerSampler(ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear()))
    direct = samplers.BlockSampler(inner, 2).sample(trained.ema, 3, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(tokens, direct) and int(tokens.max()) < VOCAB


def test_largest_divisor_by_hand():
    assert [largest_divisor(32, size) for size in (5, 7, 8, 40)] == [4, 4, 8, 32]
    assert largest_divisor(7, 3) == 1
