"""samplers.ancestral_sample against the exact law of an enumerable autoregressive model.

Reference: a Markov chain over V = 3 tokens (initial law and transition table drawn at random, float64),
whose law over the 27 sequences of length 3 is written out by enumeration; samples must match it in total
variation (TV) up to Monte-Carlo error, unconditionally and after a prefix; truncations follow Decoding.
"""

from __future__ import annotations

import itertools

import torch

import samplers

V, L, N = 3, 3, 40_000
TV_TOLERANCE = 0.03  # Monte-Carlo TV over 27 cells with N = 40,000 draws is about 0.01


def markov_model(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    initial = torch.rand(V, generator=generator, dtype=torch.float64) + 0.1
    table = torch.rand(V, V, generator=generator, dtype=torch.float64) + 0.1
    initial, table = initial / initial.sum(), table / table.sum(-1, keepdim=True)
    calls = []

    def next_token_log_probs(prefix: torch.Tensor) -> torch.Tensor:
        calls.append(prefix.shape[1])
        if prefix.shape[1] == 0:
            return initial.log().expand(prefix.shape[0], V)
        return table[prefix[:, -1]].log()

    return next_token_log_probs, initial, table, calls


def empirical(tokens: torch.Tensor) -> torch.Tensor:
    index = (tokens * torch.tensor([V * V, V, 1])).sum(-1)
    return torch.bincount(index, minlength=V**L).double() / tokens.shape[0]


def exact_law(initial, table, prefix=()):
    law = torch.zeros(V**L, dtype=torch.float64)
    for sequence in itertools.product(range(V), repeat=L):
        if tuple(sequence[: len(prefix)]) != tuple(prefix):
            continue
        p = 1.0 if prefix else float(initial[sequence[0]])
        for k in range(max(1, len(prefix)), L):
            p *= float(table[sequence[k - 1], sequence[k]])
        law[sequence[0] * V * V + sequence[1] * V + sequence[2]] = p
    return law


def test_samples_follow_the_model_law():
    model, initial, table, calls = markov_model()
    result = samplers.ancestral_sample(model, N, L, generator=torch.Generator().manual_seed(1))
    assert result.nfe == L and calls == [0, 1, 2]
    tv = 0.5 * (empirical(result.tokens) - exact_law(initial, table)).abs().sum()
    assert tv < TV_TOLERANCE, tv


def test_prefix_is_kept_and_the_rest_follows_the_conditional_law():
    model, initial, table, _ = markov_model()
    generator = torch.Generator().manual_seed(2)
    result = samplers.ancestral_sample(model, N, L, prefix=torch.tensor([2]), generator=generator)
    assert result.nfe == L - 1 and bool((result.tokens[:, 0] == 2).all())
    tv = 0.5 * (empirical(result.tokens) - exact_law(initial, table, prefix=(2,))).abs().sum()
    assert tv < TV_TOLERANCE, tv


def test_top_k_one_is_greedy_and_errors_are_one_line():
    model, initial, table, _ = markov_model()
    top1 = samplers.ancestral_sample(model, 5, L, decoding=samplers.Decoding(top_k=1))
    first = int(initial.argmax())
    expected = [first, int(table[first].argmax()), int(table[int(table[first].argmax())].argmax())]
    assert top1.tokens.tolist() == [expected] * 5
    for kwargs, fragment in (({"batch_size": 0}, "batch_size"), ({"length": 0}, "length"),
                             ({"prefix": torch.tensor([1, 2, 0, 1])}, "more than length")):
        arguments = {"batch_size": 2, "length": L, **kwargs}
        try:
            samplers.ancestral_sample(model, arguments.pop("batch_size"), arguments.pop("length"), **arguments)
        except ValueError as error:
            assert fragment in str(error) and "\n" not in str(error)
        else:
            raise AssertionError(f"no error for {kwargs}")


def test_sliding_context_reads_the_last_tokens_and_follows_the_law_it_implies():
    """context = 2 on a model whose law depends on the whole prefix it reads (and that refuses a longer one):
    x_k ~ p(. | x_{k-2}, x_{k-1}) once the text is longer than 2. Reference: that product law enumerated over
    the 81 sequences of length 4."""
    generator = torch.Generator().manual_seed(3)
    initial = torch.rand(V, generator=generator, dtype=torch.float64) + 0.1
    first = torch.rand(V, V, generator=generator, dtype=torch.float64) + 0.1
    second = torch.rand(V, V, V, generator=generator, dtype=torch.float64) + 0.1
    initial, first, second = (t / t.sum(-1, keepdim=True) for t in (initial, first, second))
    calls = []

    def next_token_log_probs(prefix: torch.Tensor) -> torch.Tensor:
        calls.append(prefix.shape[1])
        if prefix.shape[1] > 2:
            raise AssertionError("the model was given more than its context")
        if prefix.shape[1] == 0:
            return initial.log().expand(prefix.shape[0], V)
        if prefix.shape[1] == 1:
            return first[prefix[:, 0]].log()
        return second[prefix[:, 0], prefix[:, 1]].log()

    length = 4
    result = samplers.ancestral_sample(next_token_log_probs, N, length, generator=torch.Generator().manual_seed(4),
                                       context=2)
    assert calls == [0, 1, 2, 2] and result.nfe == length
    law = torch.zeros(V**length, dtype=torch.float64)
    for a, b, c, d in itertools.product(range(V), repeat=length):
        law[((a * V + b) * V + c) * V + d] = initial[a] * first[a, b] * second[a, b, c] * second[b, c, d]
    index = (result.tokens * torch.tensor([V**3, V**2, V, 1])).sum(-1)
    histogram = torch.bincount(index, minlength=V**length).double() / N
    tv = 0.5 * (histogram - law).abs().sum()
    assert tv < 0.04, tv  # Monte-Carlo TV over 81 cells at N = 40,000 is about 0.02
    try:
        samplers.ancestral_sample(next_token_log_probs, 2, 3, context=0)
    except ValueError as error:
        assert "context must be an int >= 1" in str(error)
    else:
        raise AssertionError("context=0 was accepted")
