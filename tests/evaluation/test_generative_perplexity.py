"""generative_perplexity. References: a hand computation (Python floats, math.log) under a bigram judge, the
delta-method formula written out, a hand-counted unigram entropy, and models.ARTransformer.nll."""

import itertools
import math

import pytest
import torch

import evaluation
from models import ARTransformer

START = [0.4, 0.3, 0.2, 0.1]
BIGRAM = [[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.0, 0.0]]


class BigramJudge:
    """p(x^0) = START, p(x^l | x^{l-1}) = BIGRAM[x^{l-1}]: returns (B, L, 4) log-probabilities."""

    vocab_size = 4
    max_length = 6

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start = torch.tensor(START, dtype=torch.float64).log().expand(x.shape[0], 1, 4)
        rows = torch.tensor(BIGRAM, dtype=torch.float64).log()[x[:, :-1]]
        return torch.cat([start, rows], dim=1)


def test_against_a_hand_computation():
    samples = [[0, 0, 1, 3, 1], [2, 3, 0, 0, 0], [1, 2, 2, 3, 1]]
    per_sample = []
    for row in samples:
        log_p = math.log(START[row[0]]) + sum(math.log(BIGRAM[a][b]) for a, b in itertools.pairwise(row))
        per_sample.append(-log_p / len(row))
    mean = sum(per_sample) / 3
    spread = math.sqrt(sum((m - mean) ** 2 for m in per_sample) / 2)
    # Token histograms: {0:2, 1:2, 3:1}, {0:3, 2:1, 3:1}, {1:2, 2:2, 3:1}.
    h_a = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    h_b = -(0.6 * math.log(0.6) + 2 * 0.2 * math.log(0.2))
    result = evaluation.generative_perplexity(BigramJudge(), torch.tensor(samples), batch_size=2)
    assert result.nll_per_token.tolist() == pytest.approx(per_sample, rel=1e-12)
    assert result.gen_ppl == pytest.approx(math.exp(mean), rel=1e-12)
    assert result.standard_error == pytest.approx(math.exp(mean) * spread / math.sqrt(3), rel=1e-12)
    assert result.unigram_entropy == pytest.approx((2 * h_a + h_b) / 3, rel=1e-12)
    summary = result.summary()
    assert summary["num_samples"] == 3 and summary["length"] == 5
    assert summary["mean_nll_per_token"] == pytest.approx(mean, rel=1e-12)


def test_ar_model_as_judge_matches_its_nll():
    torch.manual_seed(0)
    judge = ARTransformer(9, hidden_size=16, num_layers=1, num_heads=2, max_length=8, tie_weights=True).eval()
    samples = torch.randint(0, 9, (5, 8))
    result = evaluation.generative_perplexity(judge, samples, batch_size=3)
    with torch.no_grad():
        expected = judge.nll(samples).double() / 8
    torch.testing.assert_close(result.nll_per_token, expected, rtol=1e-5, atol=1e-6)
    assert result.gen_ppl == pytest.approx(math.exp(float(expected.mean())), rel=1e-5)


def test_errors():
    judge = BigramJudge()
    with pytest.raises(ValueError, match="length 7 > the judge's context max_length=6"):
        evaluation.generative_perplexity(judge, torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside the judge's vocabulary \[0, 4\)"):
        evaluation.generative_perplexity(judge, torch.tensor([[0, 4], [1, 1]]))
    with pytest.raises(ValueError, match="N >= 2 sequences"):
        evaluation.generative_perplexity(judge, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor of token ids"):
        evaluation.generative_perplexity(judge, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pass max_length"):
        evaluation.generative_perplexity(lambda x: judge(x), torch.zeros(2, 3, dtype=torch.long), vocab_size=4)
    training = ARTransformer(4, hidden_size=16, num_layers=1, num_heads=2, max_length=6)
    with pytest.raises(ValueError, match=r"call judge.eval\(\) first"):
        evaluation.generative_perplexity(training, torch.zeros(2, 3, dtype=torch.long))
