"""x0-prediction models (samplers.X0Predictor): the exact x0-predictor of the absorbing chain draws the same
tokens as the exact RADD denoiser for every sampler (the two scores are the same function, so the same generator
draws give identical tokens); D3PM's reading (form="d3pm") with D3PM's exact x0-parameterisation reproduces the
toy law (enumeration) where the posterior reading of the same network does not; a D3PM network (models.DiT)
samples with every sampler; packed outputs, widths, bad input. The exactness of form="posterior" on both chains
is in the sampler contract (tests/samplers/sampler_contract.py, chains "absorbing-x0" and "uniform-x0")."""

import pytest
import torch
from sampler_contract import EPS, LENGTH, NUM_SAMPLES, VOCAB, exact_logits, make_toy
from sampler_toy import total_variation, tv_noise_bound

import models
import samplers

GRID = [
    samplers.EulerSampler,
    samplers.TauLeapingSampler,
    samplers.TweedieSampler,
    samplers.TrapezoidalSampler,
    samplers.RK2Sampler,
]
ABSORBING = [*GRID, samplers.ReMDMSampler, samplers.FirstHittingSampler]  # the last two: absorbing chain only


@pytest.mark.parametrize("cls", ABSORBING, ids=[cls.__name__ for cls in ABSORBING])
def test_absorbing_x0_predictor_draws_the_denoisers_tokens(cls):
    """At a mask both readings give s_y = p(x0 = y | x_t) / expm1(sigma-bar), the RADD score of the exact
    denoiser (reference): identical tokens for one seed, with logits over n states or probabilities over V."""
    toy, denoiser = make_toy("absorbing-denoiser")
    options = {} if cls is samplers.FirstHittingSampler else {"steps": 16}
    sampler = cls(toy.process, eps=EPS, **options)
    reference = sampler.sample(denoiser, 256, LENGTH, generator=torch.Generator().manual_seed(0))
    for model in (
        samplers.X0Predictor(exact_logits(toy), log=True),
        samplers.X0Predictor(toy.posterior, form="d3pm"),
    ):
        tokens = sampler.sample(model, 256, LENGTH, generator=torch.Generator().manual_seed(0))
        assert torch.equal(tokens, reference), model


def test_d3pm_form_samples_a_d3pm_parameterised_network_exactly():
    """Uniform chain. D3PM's bound is minimised by p~(x0 | x_t) proportional to p(x0 | x_t) / P(total)[x0, x_t]
    (its eq. 4 then gives the true reverse step); sampled with form="d3pm" it reproduces p0 within sampling noise
    (enumeration, Tweedie at 64 steps: the analytic step is D3PM's posterior), and read as a posterior
    (form="posterior") it does not."""
    toy, _ = make_toy("uniform")

    def d3pm_network(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        posterior = toy.posterior(x, total)
        column = toy.process.rate_matrix.transition_to(x, total[:, None])  # (B, L, n): P[x0, x_i]
        weights = posterior / column
        return weights / weights.sum(-1, keepdim=True)

    sampler = samplers.TweedieSampler(toy.process, steps=64, eps=EPS)
    bound = tv_noise_bound(toy.p0, NUM_SAMPLES)
    tv = {}
    for form in ("d3pm", "posterior"):
        model = samplers.X0Predictor(d3pm_network, form=form)
        tokens = sampler.sample(model, NUM_SAMPLES, LENGTH, generator=torch.Generator().manual_seed(1))
        tv[form] = total_variation(toy.histogram(tokens), toy.p0)
    assert tv["d3pm"] <= bound + 0.01, tv
    assert tv["posterior"] > tv["d3pm"] + bound, tv


def test_packed_outputs_and_clean_width_give_the_same_tokens():
    """An X0Predictor that computes only the asked rows (positions=True) and one that returns V clean-token logits
    instead of n draw the same tokens as the full n-wide output (absorbing chain, Euler and Tweedie)."""
    toy, full = make_toy("absorbing-x0")
    asked = []

    def packed(x, total, where=None):
        asked.append(where)
        out = exact_logits(toy)(x, total)
        return out if where is None else out[where]

    def clean(x, total):
        return torch.log(toy.posterior(x, total))

    for cls in (samplers.EulerSampler, samplers.TweedieSampler):
        sampler = cls(toy.process, steps=16, eps=EPS)
        reference = sampler.sample(full, 128, LENGTH, generator=torch.Generator().manual_seed(2))
        for model in (samplers.X0Predictor(packed, log=True, positions=True), samplers.X0Predictor(clean, log=True)):
            tokens = sampler.sample(model, 128, LENGTH, generator=torch.Generator().manual_seed(2))
            assert torch.equal(tokens, reference)
    assert asked and all(where is not None for where in asked)  # only the masks were asked for


def test_uniform_x0_predictor_is_sampled_at_every_position():
    """On the uniform chain every position can move: the score is formed at every position, and an exact
    x0-predictor's tokens follow the exact score's closely (same generator; the float64 rounding of the two
    scores differs, so a few draws at a threshold may differ)."""
    toy, score = make_toy("uniform")
    _, x0 = make_toy("uniform-x0")
    sampler = samplers.EulerSampler(toy.process, steps=32, eps=EPS)
    a = sampler.sample(score, 512, LENGTH, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(x0, 512, LENGTH, generator=torch.Generator().manual_seed(3))
    assert (a != b).double().mean() < 0.01


def test_bad_x0_input_raises():
    toy, _ = make_toy("uniform")
    sampler = samplers.EulerSampler(toy.process, steps=4)
    with pytest.raises(ValueError, match="form must be one of"):
        samplers.X0Predictor(toy.posterior, form="mdlm")
    with pytest.raises(TypeError, match="callable"):
        samplers.X0Predictor(3)
    with pytest.raises(ValueError, match="returned shape"):
        sampler.sample(samplers.X0Predictor(lambda x, total: torch.ones(*x.shape, VOCAB + 2)), 2, LENGTH)
    with pytest.raises(ValueError, match="no mass"):
        sampler.sample(samplers.X0Predictor(lambda x, total: torch.zeros(*x.shape, VOCAB)), 2, LENGTH)
    with pytest.raises(ValueError, match="no mass"):
        logits = torch.full((2, LENGTH, VOCAB), float("-inf"))
        sampler.sample(samplers.X0Predictor(lambda x, total: logits, log=True), 2, LENGTH)


@pytest.mark.parametrize("chain", ["absorbing", "uniform"])
def test_a_d3pm_network_samples_with_every_sampler_that_applies(chain):
    """A models.DiT read as D3PM x0-logits over the n states (what configs/d3pm.yaml trains), wrapped as the
    training module would (positions=True: it computes the asked rows only): every sampler of the chain returns
    clean tokens, the same for one seed with full and with packed outputs (float64 network)."""
    toy, _ = make_toy(chain)
    n = toy.process.num_states
    torch.manual_seed(0)
    network = models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=8).double().eval()
    packed = samplers.X0Predictor(network, log=True, positions=True, form="d3pm")
    full = samplers.X0Predictor(lambda x, total: network(x, total), log=True, form="d3pm")
    classes = ABSORBING if chain == "absorbing" else GRID
    for cls in classes:
        options = {} if cls is samplers.FirstHittingSampler else {"steps": 4}
        sampler = cls(toy.process, eps=EPS, **options)
        tokens = sampler.sample(packed, 4, 6, generator=torch.Generator().manual_seed(1))
        assert tokens.shape == (4, 6) and int(tokens.min()) >= 0 and int(tokens.max()) < VOCAB, cls
        assert torch.equal(sampler.sample(full, 4, 6, generator=torch.Generator().manual_seed(1)), tokens), cls
