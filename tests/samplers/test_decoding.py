"""Destination draws: float64 exactness in the far tail (with the float32 Gumbel bug demonstrated), and
temperature / top-k / top-p / greedy against brute-force references on small categoricals."""

import math

import pytest
import torch
from scipy import stats

import samplers

TAIL_RATIO = 2e-8  # each tiny category is 2e-8 times as likely as the leader
TAIL_CATEGORIES = 2**16
ROWS = 2**13
CHUNK = 256


def tail_row() -> torch.Tensor:
    row = torch.full((TAIL_CATEGORIES + 1,), TAIL_RATIO, dtype=torch.float64)
    row[0] = 1.0
    return row


def test_float64_draws_hit_the_far_tail_at_the_binomial_rate_and_float32_gumbel_does_not():
    """One leader and 65,536 categories 2e-8 times less likely: tail mass q = M r / (1 + M r) = 1.31e-3, so
    8,192 draws hit the tail Binomial(8192, q) times (mean 10.7). The float64 path must land in the central
    1 - 2e-4 interval. Float32 Gumbel-max draws (the bug): u has granularity 2^-24, so a tiny category's
    Gumbel noise is at most ~16.6 and it wins only if the leader's noise is below 16.6 + log(r) = -1.1
    (probability ~ 0.05 per attempt): its tail rate is about 6x too small (mean ~1.7); we check it falls to a
    quarter of the exact mean or less, which at the exact rate has probability < 0.2% (binomial cdf)."""
    row = tail_row()
    tail = TAIL_CATEGORIES * TAIL_RATIO / (1 + TAIL_CATEGORIES * TAIL_RATIO)
    generator = torch.Generator().manual_seed(0)
    decoding = samplers.Decoding()
    hits64 = sum(int((decoding.draw(row.expand(CHUNK, -1), generator) > 0).sum()) for _ in range(ROWS // CHUNK))
    low, high = stats.binom.ppf(1e-4, ROWS, tail), stats.binom.isf(1e-4, ROWS, tail)
    assert low <= hits64 <= high, (hits64, low, high)

    log_row = row.float().log()
    hits32 = 0
    for _ in range(ROWS // CHUNK):
        u = torch.rand(CHUNK, TAIL_CATEGORIES + 1, generator=generator)  # float32: granularity 2^-24
        hits32 += int(((log_row - torch.log(-torch.log(u))).argmax(-1) > 0).sum())
    quarter = ROWS * tail / 4
    assert stats.binom.cdf(quarter, ROWS, tail) < 2e-3  # the check below would be rare for an exact sampler
    assert hits32 <= quarter, (hits32, quarter)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_matches_powered_probabilities(temperature):
    """Reference: q_y proportional to p_y^{1/T}, computed directly."""
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64)
    out = samplers.Decoding(temperature=temperature).transform(probs)
    expected = probs ** (1 / temperature)
    torch.testing.assert_close(out / out.sum(), expected / expected.sum(), rtol=1e-12, atol=0)


def test_top_k_and_top_p_keep_the_brute_force_sets():
    """Reference: top-k keeps the k largest; top-p keeps the smallest prefix of the sorted list reaching p."""
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]], dtype=torch.float64)
    kept = samplers.Decoding(top_k=2).transform(probs) > 0
    assert kept.tolist() == [[False, True, False, True, False]]
    # sorted: 0.4, 0.3, 0.15, 0.1, 0.05; cumulative 0.4, 0.7, 0.85: p = 0.8 needs the first three
    kept = samplers.Decoding(top_p=0.8).transform(probs) > 0
    assert kept.tolist() == [[False, True, False, True, True]]
    draws = samplers.Decoding(top_k=2).draw(probs.expand(20_000, -1), torch.Generator().manual_seed(0))
    frequency = (draws == 1).double().mean().item()
    # P(1 | kept) = 0.4 / 0.7; binomial sd sqrt(p(1-p)/N) = 0.0035, tolerance 5 sd
    assert abs(frequency - 0.4 / 0.7) < 5 * math.sqrt(0.4 / 0.7 * 0.3 / 0.7 / 20_000)


def test_greedy_is_argmax_and_bad_settings_raise():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    assert samplers.Decoding(greedy=True).draw(probs).tolist() == [1, 0]
    for kwargs, name in [({"temperature": 0.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")]:
        with pytest.raises(ValueError, match=name):
            samplers.Decoding(**kwargs)
