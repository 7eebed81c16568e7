"""The sampling loop a user can drive (samplers/base.py `Sampler.iterate`, `generate(keep_trajectory=True)`):
the trajectory's times are the sampler's grid (given with `times=`, whose intervals are the steps the sampler
reports), corrector steps appear at the time they are taken, a caller may stop early, the arguments are checked
when `iterate` is called. The contract (tests/samplers/sampler_contract.py) checks iterate against generate for
every sampler."""

import itertools

import pytest
import torch
from sampler_contract import EPS, LENGTH, make_toy

import samplers

GRID = [1.0, 0.6, 0.3, 0.05, EPS]


def test_trajectory_times_are_the_given_grid_and_steps_count_its_intervals():
    """Reference: the grid passed as `times` (4 intervals), then 0 for the final denoising step."""
    toy, model = make_toy("absorbing")
    sampler = samplers.EulerSampler(toy.process, times=GRID)
    assert sampler.steps == len(GRID) - 1 and f"steps={len(GRID) - 1}" in repr(sampler)
    result = sampler.generate(model, 8, LENGTH, generator=torch.Generator().manual_seed(0), keep_trajectory=True)
    expected = torch.tensor([*GRID, 0.0], dtype=torch.float64)
    assert torch.equal(result.times, expected[:, None].expand(-1, 8))
    assert result.nfe == len(GRID)  # one call per interval and one for the denoising step
    assert bool((result.states[0] == toy.process.rate_matrix.mask_index).all())  # the start: every position masked
    masks = (result.states == toy.process.rate_matrix.mask_index).sum((1, 2))
    assert bool((masks[1:] <= masks[:-1]).all()) and int(masks[-1]) == 0  # a revealed token stays revealed


def test_ignored_steps_with_times_and_first_hitting_steps_are_reported_as_used():
    toy, _ = make_toy("absorbing")
    assert samplers.TweedieSampler(toy.process, steps=128, times=GRID).steps == len(GRID) - 1
    assert samplers.TauLeapingSampler(toy.process, times=GRID, corrector_steps=2).steps == len(GRID) - 1
    assert samplers.EulerSampler(toy.process, steps=7).steps == 7
    assert samplers.FirstHittingSampler(toy.process).steps is None


def test_corrector_steps_are_items_at_the_time_they_are_taken():
    """Tau-leaping with 2 corrector steps after each of 3 predictor steps: items (t, s) = (1, 2/3), (2/3, 2/3)
    twice, ..., then the denoising step (eps, 0)."""
    toy, model = make_toy("uniform")
    sampler = samplers.TauLeapingSampler(toy.process, steps=3, eps=EPS, corrector_steps=2)
    steps = list(sampler.iterate(model, 4, LENGTH, generator=torch.Generator().manual_seed(1)))
    grid = torch.linspace(1.0, EPS, 4, dtype=torch.float64)
    expected = [(grid[0], grid[0])]
    for t, s in itertools.pairwise(grid):
        expected += [(t, s), (s, s), (s, s)]
    expected.append((grid[-1], torch.tensor(0.0, dtype=torch.float64)))
    assert [(float(step.t[0]), float(step.s[0])) for step in steps] == [(float(t), float(s)) for t, s in expected]
    assert [step.calls for step in steps] == list(range(len(steps)))  # a score is called once per item


def test_a_caller_can_stop_early_and_bad_arguments_fail_at_the_call():
    toy, model = make_toy("absorbing")
    sampler = samplers.EulerSampler(toy.process, steps=64, eps=EPS)
    first = []
    for step in sampler.iterate(model, 4, LENGTH, generator=torch.Generator().manual_seed(2)):
        first.append(step)
        if step.index == 2:
            break
    assert [step.calls for step in first] == [0, 1, 2]
    with pytest.raises(ValueError, match="batch_size"):
        sampler.iterate(model, 0, LENGTH)
    with pytest.raises(ValueError, match="does not fit"):
        sampler.iterate(model, 2, LENGTH, prefix=torch.zeros(LENGTH + 1, dtype=torch.long))
