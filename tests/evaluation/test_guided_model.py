"""evaluation.guidance: the model the samplers get for `--label NAME --guidance GAMMA`, and the class judge.

References: the guided log-values written out from direct network calls at the class and at the null label
(gamma log s(. | c) + (1 - gamma) log s(. | null) for a concrete score, its log-softmax for a denoiser); the
predictor-guided model from samplers.predictor_guidance called on the restored classifier by hand; naive Bayes counts
by a Python loop over the training blocks.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import ctmc
import samplers
from evaluation.class_judge import judge_class, naive_bayes_judge
from evaluation.guidance import check_guidance, guided_model, resolve_label
from evaluation.restore import load_trained
from evaluation.training_data import training_data


def random_labels_(network: torch.nn.Module) -> None:
    """Give the label embedding random rows, so that the classes and the null label differ clearly."""
    with torch.no_grad():
        network.label_embedding.table.weight.normal_(0.0, 1.0)


@pytest.fixture(params=["sedd", "radd"])
def trained(request, genre_sedd_checkpoint, genre_radd_checkpoint):
    model = load_trained({"sedd": genre_sedd_checkpoint, "radd": genre_radd_checkpoint}[request.param])
    random_labels_(model.network)
    return model


def direct(trained, x: torch.Tensor, total: torch.Tensor, label: int) -> torch.Tensor:
    """The network's log-values at one label for every row (no wrapper)."""
    labels = torch.full((x.shape[0],), label, dtype=torch.long)
    return trained.network(x, total, label=labels).double()


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 0.5])
def test_guided_values_are_the_rate_form_of_the_class_and_null_outputs(trained, gamma):
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, trained.process.num_states, (3, 12), generator=generator)
    total = torch.tensor([0.3, 1.0, 2.5])
    model = guided_model(trained, 1, gamma)
    got = model.fn(x, total).double()
    expected = gamma * direct(trained, x, total, 1) + (1 - gamma) * direct(trained, x, total, 2)
    if isinstance(model, samplers.Denoiser):
        expected = torch.log_softmax(expected, dim=-1)  # D-CFG: normalised over the clean tokens
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-5, atol=1e-5)
    assert model.evaluations_per_row == (1 if gamma in (0.0, 1.0) else 2)  # one label: one row per row


def test_predictor_guidance_reads_the_classifier_of_the_chain(genre_sedd_checkpoint, genre_classifier_checkpoint):
    trained, classifier = load_trained(genre_sedd_checkpoint), load_trained(genre_classifier_checkpoint)
    x = torch.randint(0, 258, (2, 8), generator=torch.Generator().manual_seed(1))
    total = torch.tensor([0.5, 1.5])
    got = guided_model(trained, 0, 3.0, classifier, method="first-order").fn(x, total)
    expected = samplers.predictor_guidance(samplers.network_model(trained.network, "log_score"), classifier.network,
                                           0, 3.0, method="first-order").fn(x, total)
    torch.testing.assert_close(got, expected)


def test_a_classifier_of_another_chain_is_refused(genre_radd_checkpoint, genre_classifier_checkpoint, sedd_checkpoint):
    classifier = load_trained(genre_classifier_checkpoint)
    classifier.process = ctmc.ForwardProcess(ctmc.Absorbing(300), classifier.process.schedule)  # another vocabulary
    with pytest.raises(ValueError, match="--classifier was trained on the noisy sequences of"):
        guided_model(load_trained(genre_radd_checkpoint), 0, 1.0, classifier)
    with pytest.raises(ValueError, match="--classifier needs a classifier checkpoint, but it holds a diffusion model"):
        guided_model(load_trained(genre_radd_checkpoint), 0, 1.0, load_trained(sedd_checkpoint))


def test_labels_and_weights_are_checked_on_one_line():
    assert resolve_label("tragedy", ("comedy", "tragedy"), "x.ckpt") == 1
    with pytest.raises(ValueError, match=r"--label: unknown label 'farce'; x.ckpt knows comedy, tragedy"):
        resolve_label("farce", ("comedy", "tragedy"), "x.ckpt")
    with pytest.raises(ValueError, match=r"--label comedy: x.ckpt was trained without labels"):
        resolve_label("comedy", (), "x.ckpt")
    for gamma in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="--guidance must be a finite number >= 0"):
            check_guidance(gamma)


def test_the_naive_bayes_judge_counts_the_training_blocks(genre_sedd_checkpoint):
    data = training_data(load_trained(genre_sedd_checkpoint))
    judge = naive_bayes_judge(data)
    counts = [Counter() for _ in data.class_names]
    for index, label in enumerate(data.labels_of(data.train)):
        counts[label].update(data.train[index].tolist())
    for label, counter in enumerate(counts):
        expected = torch.zeros(data.vocab_size, dtype=torch.float64)
        for token, count in counter.items():
            expected[token] = count
        assert torch.equal(judge.token_counts[label], expected)
    tragedy = torch.stack([data.validation[i] for i, c in enumerate(data.labels_of(data.validation)) if c == 1])
    verdict = judge_class(judge, data, tragedy, 1)
    predicted = judge.predict(tragedy)
    assert verdict.share.hits == int((predicted == 1).sum()) and verdict.share.total == tragedy.shape[0]
    assert verdict.recall == verdict.share  # the validation blocks of the class are these very samples
    shares = torch.bincount(torch.as_tensor(data.labels_of(data.train)), minlength=2).double()
    assert verdict.data_share == pytest.approx(float(shares[1] / shares.sum()))
