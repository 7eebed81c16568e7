"""Training on labelled data (training/base_module.py, module.py, autoregressive.py, classifier.py; cli/fit.py).

References: the validation's conditional and unconditional bounds recomputed block by block, one block per call,
through the evaluation library on the restored checkpoint (another code path, batch size 1), with the ratio
estimator's SE written out in NumPy; the AR model's exact NLL given each label likewise; label dropout's
binomial law (4 standard deviations); the untrained classifier's cross-entropy, log C exactly (zero head).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fit_helpers import CONFIGS, LABELLED_FIT, labelled_corpus, make_labelled_checkpoint, one_line_error, tiny_args

import models
from cli.main import main
from evaluation.restore import load_trained
from evaluation.training_data import training_data
from models.pretrained import from_pretrained
from models.pretrained.native import CONFIG_KEY
from training.module import DiffusionModule

LN2 = math.log(2.0)


def labelled_args(root, network: str) -> list[str]:
    corpus = labelled_corpus(root)
    return [*tiny_args(corpus, network), f"--data.paths={corpus}", "--data.labels=directory"]


def ratio_se(values: np.ndarray, tokens: float) -> float:
    """SE of sum(values) / (N tokens): sqrt(sum (n_i - R L)^2 / (N (N - 1))) / L (evaluation.bounds.ratio_estimate)."""
    ratio = values.sum() / (tokens * len(values))
    return float(np.sqrt(((values - ratio * tokens) ** 2).sum() / (len(values) * (len(values) - 1))) / tokens)


def test_checkpoint_stores_the_class_names_and_restores_the_conditional_network(genre_sedd_checkpoint, tmp_path):
    checkpoint = torch.load(genre_sedd_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint[CONFIG_KEY]["class_names"] == ["comedy", "tragedy"]
    trained = load_trained(genre_sedd_checkpoint)
    assert trained.class_names == ("comedy", "tragedy") and trained.network.num_classes == 2
    table = trained.network.label_embedding.table.weight
    assert table.shape == (3, 16) and bool((table[:2] != 0).any())  # trained away from its zero start
    main(["export", f"--ckpt_path={genre_sedd_checkpoint}", f"--out={tmp_path / 'exported'}"])
    exported = from_pretrained(tmp_path / "exported")
    assert exported.pretrained.class_names == ("comedy", "tragedy")
    assert torch.equal(exported.label_embedding.table.weight, table)


@pytest.mark.parametrize("kind", ["sedd", "ar"])
def test_validation_logs_the_conditional_and_unconditional_bits_and_the_labels_information(kind, tmp_path,
                                                                                          monkeypatch):
    config, network = {"sedd": ("sedd-genre.yaml", "models.DiT"), "ar": ("ar.yaml", "models.ARTransformer")}[kind]
    extra = LABELLED_FIT
    checkpoint = make_labelled_checkpoint(tmp_path / "fit", labelled_corpus(tmp_path), config, network, *extra)
    monkeypatch.chdir(tmp_path)  # validate's logs go here
    cli = main(["validate", "-c", str(CONFIGS / config), *labelled_args(tmp_path, network), *extra,
                f"--ckpt_path={checkpoint}"])
    result = cli.model.validation_result
    trained = load_trained(checkpoint)
    data = training_data(trained)
    blocks = [data.validation[index] for index in range(min(8, len(data.validation)))]  # limit_val_batches 2 x 4
    labels = data.labels_of(data.validation)[: len(blocks)]
    conditional, null = [], []
    for block, label in zip(blocks, labels, strict=True):
        x0, given = block[None], torch.tensor([int(label)])
        for target, value in ((conditional, given), (null, torch.tensor([2]))):
            if kind == "ar":
                target.append(float(trained.sequence_nats(x0, value)))
            else:
                draws = trained.negative_elbo_draws(x0, trained.time_samples, trained.seed, value)
                target.append(float(draws.double().mean() + trained.prior_nats(x0)))
    conditional, null = np.array(conditional), np.array(null)
    tokens = float(blocks[0].numel())
    assert result["bits_per_token"] == pytest.approx(conditional.sum() / (tokens * len(blocks)) / LN2, rel=1e-5)
    assert result["null_bits_per_token"] == pytest.approx(null.sum() / (tokens * len(blocks)) / LN2, rel=1e-5)
    information = (null - conditional).sum() / (tokens * len(blocks)) / LN2
    assert abs(information) > 1e-4  # the two classes differ after training
    assert result["label_bits_per_token"] == pytest.approx(information, rel=1e-3, abs=1e-6)
    assert result["label_bits_per_token_se"] == pytest.approx(ratio_se(null - conditional, tokens) / LN2, rel=1e-3)
    assert result["null_bits_per_token_se"] == pytest.approx(ratio_se(null, tokens) / LN2, rel=1e-4)


def test_label_dropout_replaces_labels_by_the_null_label_at_its_rate():
    module = DiffusionModule(257, network=models.DiT, class_names=["a", "b", "c"], label_dropout=0.25)
    labels = torch.arange(4000) % 3
    dropped = module.dropped_labels(labels, step=7)
    null = dropped == 3
    n, p = labels.numel(), 0.25
    assert abs(int(null.sum()) - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(module.dropped_labels(labels, step=7), dropped)  # seeded by the step: a resume redraws it
    assert not torch.equal(module.dropped_labels(labels, step=8), dropped)
    assert module.network.num_classes == 3 and module.num_classes == 3


def test_no_dropout_trains_the_conditional_model_only():
    module = DiffusionModule(257, network=models.DiT, class_names=["a", "b"], label_dropout=0.0)
    labels = torch.arange(100) % 2
    assert torch.equal(module.dropped_labels(labels, step=0), labels)


@pytest.mark.parametrize(
    ("config", "network", "extra", "message"),
    [
        ("radd.yaml", "models.MDLMDenoiser", ["--model.unigram_output_bias=false"],
         "data.labels gives 2 classes, but model.network (MDLMDenoiser) takes no num_classes"),
        ("sedd.yaml", "models.DiT", ["--model.label_dropout=1.5"], "model.label_dropout must lie in [0, 1]"),
    ],
)
def test_bad_labelled_configs_are_one_line_errors(config, network, extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(capsys, ["fit", "-c", str(CONFIGS / config), *labelled_args(tmp_path, network),
                                              *extra])
    assert not (tmp_path / "logs").exists()


def test_the_classifier_trains_on_the_labels_and_restores_as_a_classifier(genre_classifier_checkpoint, tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)  # validate's logs go here
    trained = load_trained(genre_classifier_checkpoint)
    assert trained.kind == "classifier" and trained.class_names == ("comedy", "tragedy")
    assert isinstance(trained.network, models.NoisyClassifier) and trained.process.num_states == 258
    untrained = main(["validate", "-c", str(CONFIGS / "classifier-genre.yaml"),
                      *labelled_args(tmp_path, "models.NoisyClassifier")])
    result = untrained.model.validation_result  # a zero head: log p(c | x_t) = -log 2 for every block and time
    assert result["cross_entropy"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert set(result) == {"cross_entropy", "cross_entropy_se", "accuracy", "accuracy_se"}
