"""Samplers ask only for the outputs they need (samplers/models.py `where`, docs/samplers.md).

Reference: the same sampler with every output computed (a subclass whose `needed` is None and that evaluates
the whole batch before its step, i.e. the path before packed outputs). On the absorbing chain every sampler must
draw IDENTICAL tokens (same generator draws, same values) with a model that computes only the packed rows, for
the exact enumeration model (float64) and for a tiny transformer-like network (float32, log-outputs, head on
the asked rows only); it must ask only for the masked positions (grid samplers), or only for the positions it
reveals (first-hitting: one row per sequence per call with steps=None; ReMDM).
"""

import pytest
import torch
from sampler_contract import make_toy
from torch import Tensor, nn

import ctmc
import samplers
import samplers.models as sampler_models

VOCAB, LENGTH, BATCH = 3, 3, 64
ABSORBING = [
    (samplers.EulerSampler, {}),
    (samplers.TauLeapingSampler, {"corrector_steps": 1}),
    (samplers.TweedieSampler, {}),
    (samplers.TrapezoidalSampler, {}),
    (samplers.RK2Sampler, {}),
    (samplers.ReMDMSampler, {"strength": 2.0}),
    (samplers.FirstHittingSampler, {}),
    (samplers.FirstHittingSampler, {"steps": 2}),
]
IDS = [f"{cls.__name__}{options}" for cls, options in ABSORBING]


def full_output_variant(cls: type[samplers.Sampler]) -> type[samplers.Sampler]:
    """The sampler with every position's output: `needed` is None and a single-stage sampler evaluates the
    whole batch and then calls its `step` (the theta-methods keep their own two-call `advance`)."""
    attributes = {"needed": lambda self, x: None}
    if cls in (samplers.FirstHittingSampler, samplers.ReMDMSampler):
        attributes["advance"] = samplers.Sampler.advance
    return type(f"Full{cls.__name__}", (cls,), attributes)


class Recorder:
    """Wraps a full-output callable as one that supports `where`; records each call's `where`."""

    def __init__(self, full, time_input: bool = True) -> None:
        self.full, self.time_input, self.asked = full, time_input, []

    def __call__(self, x: Tensor, *args, where: Tensor | None = None) -> Tensor:
        self.asked.append((x.clone(), None if where is None else where.clone()))
        out = self.full(x, *args)
        return out if where is None else out[where]


class TinyNetwork(nn.Module):
    """A transformer-shaped toy: embedding, one mixing layer over positions, a head applied ONLY to the rows at
    `where` (packed, as models.DiT / RADDDenoiser do); log-scores (time-conditioned) or log-probabilities."""

    def __init__(self, num_states: int, width: int, denoiser: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.denoiser = denoiser
        self.embed = nn.Embedding(num_states, 16)
        self.mix = nn.Linear(16, 16)
        self.time = nn.Linear(1, 16)
        self.head = nn.Linear(16, width)

    def forward(self, x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        h = self.embed(x)
        h = torch.tanh(h + self.mix(h.mean(1, keepdim=True)))
        if total is not None:
            h = h + self.time(total.float()[:, None, None])
        h = h if where is None else h[where]
        out = self.head(h)
        return torch.log_softmax(out, -1) if self.denoiser else out


def models_for(kind: str, positions: bool):
    """(process, model, recorder or None) for 'exact-score', 'exact-denoiser', 'net-score', 'net-denoiser'."""
    toy, _ = make_toy("absorbing")
    process = toy.process
    if kind.startswith("exact"):
        full = toy.denoiser if kind.endswith("denoiser") else toy.score
        recorder = Recorder(full)
        fn, log = (recorder if positions else full), False
    else:
        network = TinyNetwork(process.num_states, VOCAB if kind.endswith("denoiser") else VOCAB + 1,
                              kind.endswith("denoiser"))
        recorder = None
        if kind.endswith("denoiser"):
            fn = (lambda x, where=None: network(x, None, where)) if positions else (lambda x: network(x))
        else:
            fn = network if positions else (lambda x, total: network(x, total))
        log = True
    wrapper = samplers.Denoiser if kind.endswith("denoiser") else samplers.ConcreteScore
    return process, wrapper(fn, log=log, positions=positions), recorder


def draw(cls, options, process, model, **extra):
    steps = options.get("steps", 6 if cls is not samplers.FirstHittingSampler else None)
    sampler = cls(process, **{**options, "steps": steps}, eps=1e-3, **extra)
    return sampler.generate(model, BATCH, LENGTH, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("kind", ["exact-score", "exact-denoiser", "net-score", "net-denoiser"])
@pytest.mark.parametrize(("cls", "options"), ABSORBING, ids=IDS)
def test_packed_outputs_give_identical_samples(cls, options, kind):
    """Packed rows (positions=True) vs the plain callable vs every output computed: identical tokens."""
    process, packed, _ = models_for(kind, positions=True)
    _, plain, _ = models_for(kind, positions=False)
    reference = draw(full_output_variant(cls), options, process, plain, cache="none")
    cached_reference = draw(full_output_variant(cls), options, process, plain)  # default cache: rows
    for model in (packed, plain):
        result = draw(cls, options, process, model)
        assert torch.equal(result.tokens, reference.tokens)
        assert (result.nfe, result.calls) == (cached_reference.nfe, cached_reference.calls)
    assert bool((reference.tokens < VOCAB).all())


@pytest.mark.parametrize(("cls", "options"), ABSORBING, ids=IDS)
def test_only_needed_positions_are_asked_for(cls, options):
    """Grid samplers ask for exactly the masked positions; first-hitting and ReMDM only for the masks they
    reveal (first-hitting, steps=None: one row per sequence per call, L in all)."""
    process, model, recorder = models_for("exact-score", positions=True)
    result = draw(cls, options, process, model)
    assert len(recorder.asked) == result.calls > 0
    mask = process.rate_matrix.mask_index
    for x, where in recorder.asked:
        assert where is not None
        if cls in (samplers.FirstHittingSampler, samplers.ReMDMSampler):
            assert bool((where <= (x == mask)).all())
        else:
            assert torch.equal(where, x == mask)
    if cls is samplers.FirstHittingSampler and options.get("steps") is None:
        assert all(int(where.sum(1).max()) == 1 for _, where in recorder.asked)
        assert sum(int(where.sum()) for _, where in recorder.asked) == BATCH * LENGTH


@pytest.mark.parametrize("cls", [samplers.EulerSampler, samplers.TrapezoidalSampler, samplers.ReMDMSampler,
                                 samplers.FirstHittingSampler])
def test_row_cache_with_packed_outputs_keeps_the_samples(cls):
    """A where-aware denoiser with every cache mode: the samples of the uncached plain denoiser."""
    process, packed, _ = models_for("exact-denoiser", positions=True)
    _, plain, _ = models_for("exact-denoiser", positions=False)
    options = {} if cls is samplers.FirstHittingSampler else {"steps": 24}
    reference = draw(cls, options, process, plain, cache="none").tokens
    for cache in ("row", "batch", "none"):
        assert torch.equal(draw(cls, options, process, packed, cache=cache).tokens, reference), cache


def test_the_cache_answers_a_subset_and_re_evaluates_rows_asked_for_new_positions():
    """_Evaluator directly: a request within the kept positions makes no call; a request for a position not
    kept re-evaluates only that row; values always equal the full output's at the asked positions."""
    toy, _ = make_toy("absorbing")
    recorder = Recorder(toy.denoiser)
    evaluator = samplers.base._Evaluator(samplers.Denoiser(recorder, positions=True), toy.process, "row")
    x = torch.tensor([[3, 3, 0], [3, 1, 3]])
    t = torch.full((2,), 0.5, dtype=torch.float64)
    full = toy.denoiser(x)
    first = torch.tensor([[True, False, False], [True, False, True]])
    out = evaluator(x, t, first)
    assert torch.equal(out.rows(first), full[first]) and evaluator.row_evaluations == 2
    subset = torch.tensor([[True, False, False], [False, False, True]])
    out = evaluator(x, t, subset)
    assert torch.equal(out.rows(subset), full[subset]) and evaluator.calls == 1
    wider = torch.tensor([[True, True, False], [False, False, True]])  # row 0 asks for a new position
    out = evaluator(x, t, wider)
    assert evaluator.calls == 2 and evaluator.row_evaluations == 3 and recorder.asked[-1][0].shape[0] == 1
    assert torch.equal(out.rows(wider), full[wider])
    with pytest.raises(ValueError, match="selected must lie in where"):
        out.rows(torch.ones(2, 3, dtype=torch.bool))


def test_statistic_in_chunks_equals_one_pass(monkeypatch):
    """ModelOutput.statistic over chunks of 2 rows (log-values exponentiated per chunk) against one pass and
    against the chain's method on the dense score (float64)."""
    toy, _ = make_toy("absorbing")
    rate_matrix = toy.process.rate_matrix
    x = torch.randint(0, 4, (5, 3), generator=torch.Generator().manual_seed(0))
    total = torch.full((5,), 0.3, dtype=torch.float64)
    score = toy.score(x, total)
    dense = rate_matrix.reverse_exit_rate(x, score)
    where = x == 3
    for output in (samplers.ModelOutput(score, None, total),
                   samplers.ModelOutput(score[where].log(), None, total, where, log=True)):
        one_pass = output.statistic(rate_matrix.reverse_exit_rate, x)
        monkeypatch.setattr(sampler_models, "CHUNK_ELEMENTS", 2 * score.shape[-1])
        chunked = output.statistic(rate_matrix.reverse_exit_rate, x)
        monkeypatch.undo()
        assert torch.equal(chunked, one_pass)
        torch.testing.assert_close(one_pass, dense, rtol=1e-14, atol=0.0)


def test_packed_output_errors_are_one_line():
    toy, _ = make_toy("absorbing")
    sampler = samplers.EulerSampler(toy.process, steps=2)
    wrong_rows = samplers.ConcreteScore(lambda x, total, where: torch.ones(int(where.sum()) + 1, 4), positions=True)
    with pytest.raises(ValueError, match=r"returned shape .* packed rows at where.nonzero\(\)"):
        sampler.sample(wrong_rows, 2, 3)
    for bad in (float("nan"), float("inf")):
        logged = samplers.ConcreteScore(lambda x, total, bad=bad: torch.full((*x.shape, 4), bad), log=True)
        with pytest.raises(ValueError, match="nan or \\+inf log-values"):
            sampler.sample(logged, 2, 3)
    minus_inf = samplers.ConcreteScore(lambda x, total: toy.score(x, total).log(), log=True)  # log 0 is allowed
    assert sampler.sample(minus_inf, 2, 3, generator=torch.Generator().manual_seed(0)).shape == (2, 3)
    with pytest.raises(ValueError, match="non-finite"):
        sampler.sample(lambda x, total: torch.full((*x.shape, 4), -float("inf")), 2, 3)
    with pytest.raises(ValueError, match="full"):
        samplers.ModelOutput(torch.ones(2, 4), None, torch.ones(1), torch.ones(1, 2, dtype=torch.bool)).clean_scores(3)


def test_uniform_chain_keeps_full_outputs():
    """Uniform chain: every step asks for every position (where=None), so a where-aware model is called whole."""
    process = ctmc.ForwardProcess(ctmc.Uniform(VOCAB), ctmc.Geometric(1e-3, 12.0))
    toy, _ = make_toy("uniform")
    recorder = Recorder(toy.score)
    samplers.EulerSampler(process, steps=3).sample(samplers.ConcreteScore(recorder, positions=True), 4, LENGTH)
    assert len(recorder.asked) == 4 and all(where is None for _, where in recorder.asked)
