"""benchmarks.quality_blocks.log_prob_difference: the cached call against the network on the whole window, for a
block size that leaves room for a context and for one that fills the window (no context)."""

from __future__ import annotations

import pytest
import torch

import models
from benchmarks.quality_blocks import log_prob_difference


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_cached_and_window_calls_agree_to_round_off(block_size):
    torch.manual_seed(0)
    network = models.BlockDenoiser.from_preset("tiny", 11, max_length=8, local_mixing=3, block_size=block_size,
                                               mix_across_blocks=True).eval()
    tokens = torch.randint(0, 11, (3, 8))
    difference = log_prob_difference(network, tokens, 8)
    assert 0.0 <= difference < 1e-5
    if block_size == 8:  # no context: the same single-block call both ways
        assert difference == 0.0
