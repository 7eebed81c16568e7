"""The independent judge of class-conditional samples: a naive Bayes of the training blocks and their labels.

The judge shares nothing with the generators (evaluation/naive_bayes.py: token counts per class, add-alpha
smoothing), so the share of samples it assigns to the requested class measures the guidance, not the generator's
own opinion. It is read beside two references from the same data (data.TextBlocks with labels):

- the class's share of the training blocks (what unguided samples of a perfect model would show if the judge were
  perfect), and
- the judge's recall on real text: the share of the validation blocks of the class that it assigns to the class
  (what text of that class scores; guided samples can exceed it by exaggerating the class's words).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from data import TextBlocks
from evaluation.class_share import ClassShare, class_share
from evaluation.naive_bayes import NaiveBayes

JUDGE_ALPHA = 0.1  # add-alpha pseudo-count per token: 1 would add V = 50,257 counts per class, more than a poem has
JUDGE_UNIFORM_PRIOR = True  # judge each class on equal footing (recall on the genre validation blocks: 0.75-0.81)
BLOCKS_PER_BATCH = 4096  # training blocks counted at a time


def stacked(blocks: object, indices: range) -> Tensor:
    """(n, L) long: the blocks blocks[i] for i in indices (a data.TokenBlocks or any dataset of (L,) tensors)."""
    return torch.stack([blocks[index] for index in indices])


def naive_bayes_judge(
    data: TextBlocks, alpha: float = JUDGE_ALPHA, uniform_prior: bool = JUDGE_UNIFORM_PRIOR
) -> NaiveBayes:
    """The multinomial naive Bayes of `data`'s training blocks and labels (C = data.num_classes, V = data.vocab_size,
    add-alpha smoothing; the classes' shares of the training blocks as prior unless uniform_prior)."""
    labels = torch.as_tensor(data.labels_of(data.train))
    judge = NaiveBayes(data.vocab_size, data.num_classes, alpha=alpha, uniform_prior=uniform_prior)
    for start in range(0, len(data.train), BLOCKS_PER_BATCH):
        part = range(start, min(start + BLOCKS_PER_BATCH, len(data.train)))
        judge.update(stacked(data.train, part), labels[start : part.stop])
    return judge


@dataclass(frozen=True)
class ClassVerdict:
    """The judge's verdict on samples of one requested class: name, label, share (k / n with its binomial SE), the
    class's share of the training blocks, and the judge's recall on the class's validation blocks (with its SE)."""

    name: str
    label: int
    share: ClassShare
    data_share: float
    recall: ClassShare


def validation_recall(judge: NaiveBayes, data: TextBlocks, label: int) -> ClassShare:
    """The share of `data`'s validation blocks of class `label` that `judge` assigns to `label` (binomial SE)."""
    labels = torch.as_tensor(data.labels_of(data.validation))
    indices = torch.nonzero(labels == label).flatten().tolist()
    if not indices:
        raise ValueError(f"label: no validation block is of class {label} ({data.class_names[label]!r})")
    return judge.share(torch.stack([data.validation[index] for index in indices]), label)


def judge_class(judge: NaiveBayes, data: TextBlocks, tokens: Tensor, label: int) -> ClassVerdict:
    """The judge's verdict on samples tokens (N, L) long in [0, V) drawn for class `label` of `data`."""
    shares = data.class_shares()
    return ClassVerdict(
        name=data.class_names[label], label=label, share=class_share(judge.predict(tokens), label),
        data_share=float(shares[label]), recall=validation_recall(judge, data, label),
    )
