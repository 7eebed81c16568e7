"""losses.BlockDiffusionLoss (BD3-LM, Arriola et al. 2025) with models.BlockDenoiser, in float64.

References: the autoregressive NLL of the same network computed by a loop over prefixes (block size 1); the
RADD lambda-DCE loss of the same weights on the same draws (block size L); a loop over blocks that runs the
network on each clean prefix + noisy block (the one-pass loss must equal it); the bound enumerated over every
masked subset of every block with the mask-rate integral from scipy.special.betainc (the estimators must
average to it, and the clipped ones to its part over [beta, omega]).
"""

import itertools
import math

import pytest
import torch
from scipy.special import beta as beta_function
from scipy.special import betainc

import ctmc
import losses
import models

VOCAB = 5
MASK = VOCAB
EPS = 1e-3  # LogLinear: lambda_1 = 1 - EPS
SEED = 7


def _process() -> ctmc.ForwardProcess:
    return ctmc.ForwardProcess(ctmc.Absorbing(VOCAB), ctmc.LogLinear(EPS))


def _network(block_size: int, max_length: int = 8) -> models.BlockDenoiser:
    torch.manual_seed(0)
    network = models.BlockDenoiser(VOCAB, 16, 2, 2, max_length, local_mixing=3, block_size=block_size).double().eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return network


def _clean(batch: int = 3, length: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _log_prob(network: models.BlockDenoiser, x: torch.Tensor, position: int, token: torch.Tensor) -> torch.Tensor:
    """log p_theta(x0_position = token | x) of the plain form, (B,)."""
    return network(x)[:, position].gather(-1, token[:, None]).squeeze(-1)


def test_block_size_one_is_lambda_1_times_the_autoregressive_nll_per_block() -> None:
    """S = 1: the only draw masks the block; weight lambda_1 (deterministic). Reference: -log p(x_l | x_{<l}) from
    the plain form run on x_{<l} followed by one mask, position by position."""
    network, loss = _network(1), losses.BlockDiffusionLoss(_process(), 1)
    x0 = _clean()
    draw = loss.count_noise(x0, torch.ones_like(x0), torch.Generator().manual_seed(0))
    assert bool((draw.x_t == MASK).all())
    per_block = draw.weight * loss.block_losses(network(draw.x_t, clean=x0), x0, draw.x_t, draw.t)  # (B, L)
    mask = torch.full((x0.shape[0], 1), MASK)
    prefixes = [torch.cat([x0[:, :position], mask], 1) for position in range(6)]
    nll = torch.stack([-_log_prob(network, x, position, x0[:, position]) for position, x in enumerate(prefixes)], 1)
    torch.testing.assert_close(per_block, (1 - EPS) * nll, rtol=1e-12, atol=0)


def test_block_size_l_is_the_radd_lambda_dce_bound_on_the_same_draws() -> None:
    block, loss = _network(6), losses.BlockDiffusionLoss(_process(), 6)
    radd = models.RADDDenoiser(VOCAB, 16, 2, 2, 8, local_mixing=3).double().eval()
    radd.load_state_dict(block.state_dict())
    reference_loss = losses.LambdaDCE(_process())
    x0 = _clean(batch=16)
    t = reference_loss.sample_time(16, generator=torch.Generator().manual_seed(2)).double()
    x_t = _process().sample(x0, t[:, None], generator=torch.Generator().manual_seed(3))
    expected = reference_loss(radd(x_t), x0, x_t, t)
    torch.testing.assert_close(loss(block(x_t, clean=x0), x0, x_t, t[:, None]), expected, rtol=1e-12, atol=0)
    # the masked-count draws too: the block estimator is MaskedCountEstimator on the one block
    counts = torch.arange(16) % 6 + 1
    draw = loss.count_noise(x0, counts[:, None], torch.Generator().manual_seed(4))
    reference = losses.MaskedCountEstimator(_process()).sample(
        x0, counts, reference_loss.time_density, torch.Generator().manual_seed(4)
    )
    assert torch.equal(draw.x_t, reference.x_t) and torch.equal(draw.t[:, 0], reference.t)
    torch.testing.assert_close(draw.weight[:, 0], reference.weight, rtol=1e-12, atol=0)


@pytest.mark.parametrize("packed", [False, True])
def test_one_pass_equals_a_loop_over_clean_prefix_and_noisy_block(packed: bool) -> None:
    block_size, network = 2, _network(2)
    loss, reference_loss = losses.BlockDiffusionLoss(_process(), block_size), losses.LambdaDCE(_process())
    x0 = _clean(batch=8)
    t = loss.sample_block_times(8, 3, generator=torch.Generator().manual_seed(5)).double()
    x_t = loss.noise(x0, t, torch.Generator().manual_seed(6))
    where = loss.output_positions(x_t) if packed else None
    per_block = loss.block_losses(network(x_t, where=where, clean=x0), x0, x_t, t)
    for index in range(3):
        start, stop = index * block_size, (index + 1) * block_size
        output = network(torch.cat([x0[:, :start], x_t[:, start:stop]], 1))[:, start:]
        expected = reference_loss(output, x0[:, start:stop], x_t[:, start:stop], t[:, index])
        torch.testing.assert_close(per_block[:, index], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss(network(x_t, clean=x0), x0, x_t, t), per_block.sum(1), rtol=1e-12, atol=0)


def _enumerated_bound(network: models.BlockDenoiser, x0: torch.Tensor, block_size: int, low: float, high: float):
    """(K,) sum over the masked subsets A of each block of I(|A|) sum_{i in A} -log p(x0_i | block with A masked,
    clean prefix), I(m) = int_low^high lambda^{m-1} (1 - lambda)^{S-m} d lambda (scipy's regularised betainc)."""
    terms = []
    for start in range(0, x0.shape[1], block_size):
        total = 0.0
        for size in range(1, block_size + 1):
            a, b = size, block_size - size + 1
            integral = (betainc(a, b, high) - betainc(a, b, low)) * beta_function(a, b)
            for subset in itertools.combinations(range(block_size), size):
                noisy = x0[:, start : start + block_size].clone()
                noisy[:, list(subset)] = MASK
                with torch.no_grad():
                    log_probs = network(torch.cat([x0[:, :start], noisy], 1))[0, start:]
                total += integral * float(-sum(log_probs[i, x0[0, start + i]] for i in subset))
        terms.append(total)
    return torch.tensor(terms, dtype=torch.float64)


@torch.no_grad()
def test_estimators_average_to_the_enumerated_bound_and_clipping_to_its_part() -> None:
    """Masked counts and per-block times (full range), and clipped times: means of 6,000 draws within 5 standard
    errors (the iid formula, conservative for the stratified draws) of the enumeration. Measured on seeds 0..9:
    at most 3.6 standard errors."""
    block_size, draws = 3, 6000
    network = _network(block_size)
    x0 = _clean(batch=1, length=6, seed=3)
    rows = x0.expand(draws, 6)
    full = losses.BlockDiffusionLoss(_process(), block_size)
    clipped = losses.BlockDiffusionLoss(_process(), block_size, clip=(0.3, 0.8))
    generator = torch.Generator().manual_seed(SEED)
    count_draw = full.count_noise(rows, full.sample_block_counts(draws, 2, generator), generator)
    estimates = {
        "counts": count_draw.weight * full.block_losses(network(count_draw.x_t, clean=rows), rows, count_draw.x_t,
                                                        count_draw.t),
    }
    for name, loss in (("times", full), ("clipped", clipped)):
        t = loss.sample_block_times(draws, 2, generator=generator, antithetic=True).double()
        x_t = loss.noise(rows, t, generator)
        estimates[name] = loss.block_losses(network(x_t, clean=rows), rows, x_t, t)
    exact = _enumerated_bound(network, x0, block_size, 0.0, 1 - EPS)
    part = _enumerated_bound(network, x0, block_size, 0.3, 0.8)
    assert bool((part < exact).all())
    for name, values in estimates.items():
        target = part if name == "clipped" else exact
        error = values.mean(0) - target
        standard_error = values.std(0) / math.sqrt(draws)
        assert bool((error.abs() < 5 * standard_error).all()), (name, error, standard_error)
    assert clipped.bound().clip is None and clipped.bound().rate_range == full.rate_range


def test_draw_layout_per_block() -> None:
    """Block times: stratified over all B K blocks (the sorted lambdas one per stratum), the clipped ones inside
    [beta, omega]; noise: a block at t ~ 0 stays clean, a block at t = 1 is masked up to lambda_1."""
    loss = losses.BlockDiffusionLoss(_process(), 2)
    t = loss.sample_block_times(50, 4, generator=torch.Generator().manual_seed(0), antithetic=True).double()
    rate = -torch.expm1(-loss.process.total(t)) / (1 - EPS)
    strata = rate.flatten().sort().values * 200
    assert bool((strata.floor() == torch.arange(200)).all())
    clipped = losses.BlockDiffusionLoss(_process(), 2, clip=(0.2, 0.5))
    clipped_rate = -torch.expm1(-loss.process.total(clipped.sample_block_times(64, 3).double()))
    assert bool((clipped_rate > 0.2 - 1e-6).all()) and bool((clipped_rate < 0.5 + 1e-6).all())
    x0 = _clean(batch=400, length=4)
    times = torch.tensor([[1e-6, 1.0]]).expand(400, 2)
    x_t = loss.noise(x0, times, torch.Generator().manual_seed(1))
    assert int((x_t[:, :2] == MASK).sum()) <= 2 and float((x_t[:, 2:] == MASK).double().mean()) > 0.99


def test_bad_input_raises_one_clear_line() -> None:
    process = _process()
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        losses.BlockDiffusionLoss(process, 0)
    for clip in ((0.5, 0.5), (0.2, 1.5), (0.9995, 1.0), (0.1,), "0.1"):
        with pytest.raises(ValueError, match="clip"):
            losses.BlockDiffusionLoss(process, 2, clip=clip)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ctmc\.Absorbing"):
        losses.BlockDiffusionLoss(ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.LogLinear()), 2)
    loss = losses.BlockDiffusionLoss(process, 4)
    x0 = _clean()
    output = torch.log_softmax(torch.zeros(3, 6, VOCAB, dtype=torch.float64), -1)
    with pytest.raises(ValueError, match="multiple of block_size=4"):
        loss(output, x0, x0, torch.ones(3))
    loss = losses.BlockDiffusionLoss(process, 3)
    with pytest.raises(ValueError, match="one time per block"):
        loss(output, x0, x0, torch.ones(3, 3))
    with pytest.raises(ValueError, match="output must have shape"):
        loss(output[:, :3], x0, x0, torch.ones(3, 2))
    with pytest.raises(ValueError, match="counts must be"):
        loss.count_noise(x0, torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="bound"):
        losses.BlockDiffusionLoss(process, 3, clip=(0.1, 0.9)).count_noise(x0, torch.ones(3, 2, dtype=torch.long))
