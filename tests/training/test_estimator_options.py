"""The module's estimator options, SE and unigram reference, and the networks' unigram output-bias init.

References: manual counting (unigram model), evaluation.bounds.ratio_estimate on the logged per-sequence values,
row-order and batching invariance of the seeded draws, and the networks' outputs at init (closed forms).
"""

from __future__ import annotations

import math

import pytest
import torch
from fit_helpers import CONFIGS, read_metrics, tiny_args, tiny_corpus

import ctmc
import losses
import models
from cli.main import main
from data import unigram_log_probs
from evaluation.bounds import seeded_count_noise, sequence_negative_elbo
from training.module import DiffusionModule


def _module(**options) -> DiffusionModule:
    network = options.pop("network", lambda n: models.RADDDenoiser(n, hidden_size=16, num_layers=1, num_heads=2))
    return DiffusionModule(9, network=network, **options)


def test_estimator_choices_and_errors():
    assert isinstance(_module(loss=losses.LambdaDCE).val_estimator, losses.MaskedCountEstimator)  # auto
    assert _module(loss=losses.LambdaDCE, val_estimator="time").val_estimator is None
    uniform = _module(rate_matrix=ctmc.Uniform, loss=losses.ScoreEntropy,
                      network=lambda n: models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8))
    assert uniform.train_estimator is None and uniform.val_estimator is None  # auto on the uniform chain
    with pytest.raises(ValueError, match=r"model\.val_estimator must be one of"):
        _module(loss=losses.LambdaDCE, val_estimator="bogus")
    with pytest.raises(ValueError, match=r"model\.train_estimator=masked_count needs the absorbing chain"):
        _module(rate_matrix=ctmc.Uniform, loss=losses.ScoreEntropy, train_estimator="masked_count",
                network=lambda n: models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8))
    with pytest.raises(ValueError, match="unigram_output_bias needs a network with init_output_bias"):
        _module(loss=losses.LambdaDCE, unigram_output_bias=True, network=lambda n: torch.nn.Linear(2, 2))


def test_unigram_log_probs_match_manual_counts():
    blocks = [torch.tensor([0, 1, 1, 3]), torch.tensor([3, 3, 1, 0])]
    counts = torch.tensor([2.0, 3.0, 0.0, 3.0, 0.0], dtype=torch.float64)
    expected = ((counts + 0.5) / (8 + 0.5 * 5)).log()
    torch.testing.assert_close(unigram_log_probs(blocks, 5), expected, rtol=1e-12, atol=0)


def test_init_output_bias_starts_every_network_at_the_unigram_model():
    vocab = 7
    log_probs = torch.log_softmax(torch.randn(vocab, dtype=torch.float64), -1)
    x = torch.tensor([[0, vocab, 3, vocab]])
    radd = models.RADDDenoiser(vocab, hidden_size=16, num_layers=1, num_heads=2).double()
    radd.init_output_bias(log_probs)
    torch.testing.assert_close(radd(x)[0, 1], log_probs, rtol=1e-12, atol=1e-12)
    dit = models.DiT(vocab + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8,
                     absorbing_parameterization=True).double()
    dit.init_output_bias(log_probs)
    total = torch.tensor([0.7], dtype=torch.float64)
    # the true score form at a masked position: p(y) / (e^sigma - 1)  (RADD, Ou et al. 2024)
    expected = log_probs - torch.log(torch.expm1(total))
    torch.testing.assert_close(dit(x, total)[0, 1, :vocab], expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="absorbing_parameterization"):
        models.DiT(vocab + 1, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8).init_output_bias(log_probs)
    with pytest.raises(ValueError, match="shape"):
        radd.init_output_bias(log_probs[:-1])
    ar = models.ARTransformer(vocab, hidden_size=16, num_layers=1, num_heads=2).double()
    ar.init_output_bias(log_probs)  # the AR yardstick starts as the same unigram model: every row is log_probs
    torch.testing.assert_close(ar(x[:, :3].clamp(max=vocab - 1))[0], log_probs.expand(3, vocab), rtol=1e-12, atol=1e-12)


def test_count_noise_does_not_depend_on_row_order_or_batching():
    process = ctmc.ForwardProcess(ctmc.Absorbing(11), ctmc.LogLinear())
    estimator, loss = losses.MaskedCountEstimator(process), losses.LambdaDCE(process)
    x0 = torch.randint(0, 11, (6, 8), generator=torch.Generator().manual_seed(0))
    for stratify_rows, draws in ((False, 3), (True, 1)):
        forward = seeded_count_noise(loss, estimator, x0, draws, stratify_rows, 4, 2)
        backward = seeded_count_noise(loss, estimator, x0.flip(0), draws, stratify_rows, 4, 2)
        flip = torch.arange(6 * draws).reshape(6, draws).flip(0).reshape(-1)
        assert torch.equal(forward.x_t, backward.x_t[flip])
        torch.testing.assert_close(forward.weight, backward.weight[flip], rtol=0, atol=0)
    rows = seeded_count_noise(loss, estimator, x0, 1, True, 4, 2)
    counts = (rows.x_t == 11).sum(-1)  # six rows over 1..8, stratified: no count twice
    assert len(set(counts.tolist())) == 6
    network = models.RADDDenoiser(11, hidden_size=16, num_layers=1, num_heads=2).double()
    with torch.no_grad():
        together = sequence_negative_elbo(loss, network, x0, 3, 5, estimator)
        single = torch.cat([sequence_negative_elbo(loss, network, x0[i : i + 1], 3, 5, estimator) for i in range(6)])
    torch.testing.assert_close(together, single, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("config", "network"), [("sedd.yaml", "models.DiT"), ("radd.yaml", "models.RADDDenoiser")])
def test_fit_logs_the_standard_error_and_the_unigram_reference(config, network, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    cli = main(["fit", "-c", str(CONFIGS / config), *tiny_args(corpus, network),
                "--model.val_time_samples=4", "--model.unigram_output_bias=true"])
    result = cli.model.validation_result
    assert 0.0 < result["bits_per_token_se"] < result["bits_per_token"]
    # the unigram reference, by hand: the training blocks' add-1/2 unigram model on the validation blocks
    data = cli.datamodule
    log_probs = unigram_log_probs(data.train_dataset, data.vocab_size)
    val = torch.stack([data.val_dataset[i] for i in range(min(len(data.val_dataset), 2 * 4))])
    assert math.isclose(result["unigram_bits_per_token"], float(-log_probs[val].mean() / math.log(2)), rel_tol=1e-6)
    (row,) = [row for row in read_metrics(tmp_path) if row.get("val/bits_per_token_se")]
    assert math.isclose(float(row["val/bits_per_token_se"]), result["bits_per_token_se"], rel_tol=1e-6)
    assert math.isclose(float(row["val/unigram_bits_per_token"]), result["unigram_bits_per_token"], rel_tol=1e-6)
