"""The naive Bayes judge (evaluation/naive_bayes.py) and the class share (evaluation/class_share.py).

Reference: a separately written float64 brute force with Python loops and `math` (counting every token of every
block in dicts, smoothing, summing the logs per block and normalising with a max-shifted sum), and the binomial
standard error written out.
"""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.class_share import class_share
from evaluation.naive_bayes import NaiveBayes

VOCAB, CLASSES, LENGTH = 7, 3, 6


def corpus(blocks: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks whose tokens lean towards tokens 2c and 2c + 1 for class c (so the classes are learnable)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (blocks,), generator=generator)
    noise = torch.randint(0, VOCAB, (blocks, LENGTH), generator=generator)
    typical = 2 * labels[:, None] + torch.randint(0, 2, (blocks, LENGTH), generator=generator)
    lean = torch.rand(blocks, LENGTH, generator=generator) < 0.5
    return torch.where(lean, typical, noise), labels


def brute_force_log_posterior(train, labels, blocks, alpha: float, uniform_prior: bool) -> list[list[float]]:
    counts = [dict.fromkeys(range(VOCAB), 0) for _ in range(CLASSES)]
    blocks_of = [0] * CLASSES
    for row, c in zip(train.tolist(), labels.tolist(), strict=True):
        blocks_of[c] += 1
        for token in row:
            counts[c][token] += 1
    out = []
    for row in blocks.tolist():
        joint = []
        for c in range(CLASSES):
            total = sum(counts[c].values())
            prior = 1.0 / CLASSES if uniform_prior else blocks_of[c] / len(labels)
            value = math.log(prior)
            for token in row:
                value += math.log((counts[c][token] + alpha) / (total + alpha * VOCAB))
            joint.append(value)
        peak = max(joint)
        norm = peak + math.log(sum(math.exp(v - peak) for v in joint))
        out.append([v - norm for v in joint])
    return out


@pytest.mark.parametrize(("alpha", "uniform_prior"), [(1.0, False), (0.1, True)])
def test_posterior_matches_brute_force(alpha, uniform_prior):
    train, labels = corpus(60, seed=0)
    test, _ = corpus(25, seed=1)
    judge = NaiveBayes(VOCAB, CLASSES, alpha=alpha, uniform_prior=uniform_prior).fit(train, labels)
    expected = torch.tensor(brute_force_log_posterior(train, labels, test, alpha, uniform_prior), dtype=torch.float64)
    torch.testing.assert_close(judge.predict_log_proba(test), expected, rtol=0, atol=1e-12)
    assert torch.equal(judge.predict(test), expected.argmax(-1))


def test_update_in_batches_equals_one_fit():
    train, labels = corpus(60, seed=2)
    whole = NaiveBayes(VOCAB, CLASSES).fit(train, labels)
    streamed = NaiveBayes(VOCAB, CLASSES).fit(train[:20], labels[:20]).update(train[20:], labels[20:])
    assert torch.equal(whole.token_counts, streamed.token_counts) and torch.equal(
        whole.block_counts, streamed.block_counts
    )
    assert float(whole.token_counts.sum()) == train.numel()


def test_share_and_standard_error():
    """Share k / n and sqrt(p (1 - p) / n), written out; the judge recovers the label of held-out blocks well above
    chance (1/3) on the learnable corpus."""
    predicted = torch.tensor([0, 2, 2, 1, 2, 0, 2, 2])
    result = class_share(predicted, 2)
    assert (result.hits, result.total) == (5, 8)
    assert result.share == 5 / 8 and result.standard_error == pytest.approx(math.sqrt(5 / 8 * 3 / 8 / 8), rel=1e-15)
    judge = NaiveBayes(VOCAB, CLASSES).fit(*corpus(600, seed=3))
    test, labels = corpus(300, seed=4)
    assert float((judge.predict(test) == labels).double().mean()) > 0.8
    held_out = judge.share(test[labels == 1], 1)
    assert held_out.share > 0.8 and held_out.total == int((labels == 1).sum())


def test_bad_input_raises_one_line_errors():
    train, labels = corpus(10, seed=5)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        NaiveBayes(VOCAB, CLASSES, alpha=0.0)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        NaiveBayes(VOCAB, 1)
    judge = NaiveBayes(VOCAB, CLASSES)
    with pytest.raises(ValueError, match="call fit"):
        judge.predict(train)
    with pytest.raises(ValueError, match=r"token ids in \[0, 7\)"):
        judge.fit(train + VOCAB, labels)
    with pytest.raises(ValueError, match="labels must hold class ids"):
        judge.fit(train, labels + CLASSES)
    with pytest.raises(ValueError, match="labels must be a"):
        judge.fit(train, labels[:3])
    judge.fit(train[labels != 2], labels[labels != 2])
    with pytest.raises(ValueError, match=r"classes \[2\] have no training blocks"):
        judge.predict(train)
    with pytest.raises(ValueError, match="label must be a class id"):
        NaiveBayes(VOCAB, CLASSES).fit(train, labels).share(train, 3)
    with pytest.raises(ValueError, match="predicted must be a non-empty"):
        class_share(torch.zeros(0, dtype=torch.long), 0)
