"""Per-row caching of a time-independent denoiser (samplers/base.py `_Evaluator`): the same samples as without
a cache and with the whole-batch cache for a fixed seed, fewer row-evaluations, NFE = row-evaluations / B, and
only changed rows sent to the network."""

import pytest
import torch
from sampler_contract import make_toy

import samplers


@pytest.mark.parametrize("cls", [samplers.EulerSampler, samplers.TrapezoidalSampler, samplers.ReMDMSampler])
def test_row_cache_gives_identical_samples_and_fewer_evaluations(cls):
    toy, _ = make_toy("absorbing-denoiser")
    batches = []

    def denoiser(x):
        batches.append(x.shape[0])
        return toy.denoiser(x)

    results = {}
    for cache in ("none", "batch", "row"):
        batches.clear()
        sampler = cls(toy.process, steps=64, eps=1e-3, cache=cache)
        result = sampler.generate(samplers.Denoiser(denoiser), 32, 3, generator=torch.Generator().manual_seed(0))
        assert result.calls == len(batches)
        assert result.nfe == pytest.approx(sum(batches) / 32)  # row-evaluations / batch size
        results[cache] = result
    assert torch.equal(results["row"].tokens, results["none"].tokens)
    assert torch.equal(results["batch"].tokens, results["none"].tokens)
    assert results["row"].nfe < results["batch"].nfe <= results["none"].nfe
    assert results["row"].calls <= results["batch"].calls


def test_only_changed_rows_are_evaluated():
    """Two rows; the second is fully given (never changes): after the first call it is never sent again."""
    toy, _ = make_toy("absorbing-denoiser")
    seen = []

    def denoiser(x):
        seen.append(x.clone())
        return toy.denoiser(x)

    given = torch.zeros(2, 3, dtype=torch.bool)
    given[1] = True
    tokens = torch.tensor([[0, 0, 0], [1, 2, 0]])
    samplers.EulerSampler(toy.process, steps=16, eps=1e-3).generate(
        samplers.Denoiser(denoiser), 2, 3, generator=torch.Generator().manual_seed(0), given=given, tokens=tokens
    )
    assert seen[0].shape[0] == 2 and all(batch.shape[0] == 1 for batch in seen[1:]) and len(seen) > 1


def test_a_score_is_never_cached_and_bad_cache_raises():
    toy, model = make_toy("absorbing")
    result = samplers.EulerSampler(toy.process, steps=8, cache="row").generate(model, 4, 3)
    assert result.nfe == result.calls == 9
    with pytest.raises(ValueError, match="cache"):
        samplers.EulerSampler(toy.process, cache="rows")
