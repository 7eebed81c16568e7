"""The public pieces that benchmarks/quality.py builds on: evaluation.generation.draw_samples,
evaluation.judge.judge_tokens, evaluation.training_data.training_data / validation_blocks, and
evaluation.judge.read_samples on a fractional NFE footer.

References: losses.generative_perplexity called directly on the drawn tokens; the batches of the data
module's own validation DataLoader; the NFE written by evaluation.generation.format_samples.
"""

from __future__ import annotations

import math

import pytest
import torch

import evaluation
from evaluation.generation import Samples, draw_samples, format_samples
from evaluation.judge import judge_tokens, read_samples
from evaluation.restore import load_trained
from evaluation.training_data import training_data, validation_blocks
from models.pretrained.native import read_checkpoint
from training.datamodule import TextDataModule


def test_judge_tokens_is_generative_perplexity_of_the_judge(ar_checkpoint, radd_checkpoint):
    judge, model = load_trained(ar_checkpoint), load_trained(radd_checkpoint)
    drawn = draw_samples(model, 3, 10, seed=1, sampler="first-hitting", options={"steps": None})
    assert drawn.tokens.shape == (3, 10) and drawn.sampler == "first-hitting, exact steps"
    assert drawn.nfe <= 10 and drawn.seconds_per_sample > 0  # one token per call, fewer with the row cache
    score = judge_tokens(judge, drawn.tokens, batch_size=2)
    expected = evaluation.generative_perplexity(judge.network, drawn.tokens)
    assert math.isclose(score.gen_ppl, expected.gen_ppl, rel_tol=1e-12)
    assert math.isclose(score.standard_error, expected.standard_error, rel_tol=1e-9)
    assert score.unigram_entropy == expected.unigram_entropy


def test_draw_samples_of_an_ar_model_is_ancestral_and_reproducible(ar_checkpoint):
    model = load_trained(ar_checkpoint)
    first, again = (draw_samples(model, 2, 7, seed=3) for _ in range(2))
    assert first.sampler == "ancestral" and first.nfe == 7 and torch.equal(first.tokens, again.tokens)
    with pytest.raises(ValueError, match="samples ancestrally"):
        draw_samples(model, 2, 7, options={"steps": 4})
    with pytest.raises(ValueError, match="max_length"):
        draw_samples(model, 2, 33)


def test_judge_tokens_refuses_a_diffusion_judge(radd_checkpoint):
    with pytest.raises(ValueError, match="needs an autoregressive checkpoint"):
        judge_tokens(load_trained(radd_checkpoint), torch.zeros(2, 4, dtype=torch.long))


def test_validation_blocks_are_the_validation_loaders_blocks(ar_checkpoint):
    data = training_data(str(ar_checkpoint))
    assert data.tokenizer_name == "char" and data.seq_len == 16
    section = read_checkpoint(ar_checkpoint).data  # the Lightning data module of the run, rebuilt
    loaded = torch.cat(list(TextDataModule(**section).val_dataloader()))
    assert torch.equal(validation_blocks(data), loaded)
    assert torch.equal(validation_blocks(data, 3), loaded[:3])
    with pytest.raises(ValueError, match="count: the data has"):
        validation_blocks(data, loaded.shape[0] + 1)


def test_read_samples_takes_a_fractional_nfe(tmp_path):
    tokens = torch.tensor([[1, 2], [3, 3]])
    text = format_samples(Samples(["first sample", "second one"], tokens, [0.7, 0.0], 10.5), "euler, 8 steps")
    path = tmp_path / "samples.txt"
    path.write_text(text, encoding="utf-8")
    assert read_samples(str(path)) == (["first sample", "second one"], 10.5)
