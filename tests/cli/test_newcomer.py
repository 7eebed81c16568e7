"""What a new user meets: a bad trainer value as one line, rows labelled by optimiser steps, the learning curve
drawn at the end of fit and by `lightning plot`, plain progress lines and no advertisement when the output is a
file, and `evaluate` printing the comparable unigram baseline beside the text's own entropy."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, one_line_error, read_metrics, tiny_args, tiny_corpus

from cli.main import main
from data import TextBlocks, TextCorpus, unigram_log_probs
from data.tokens import document_ids
from evaluation.curves import read_curve
from models.pretrained.native import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_a_negative_max_steps_is_one_line_naming_the_option(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [item for item in tiny_args(tiny_corpus(tmp_path)) if not item.startswith("--trainer.max_steps")]
    line = one_line_error(capsys, ["fit", "-c", str(CONFIGS / "sedd.yaml"), *args, "--trainer.max_steps=-5"])
    assert "max_steps" in line
    assert not list(tmp_path.glob("logs/**/*.ckpt"))


def test_rows_are_labelled_by_optimiser_steps_taken_and_the_curve_is_drawn(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [item for item in tiny_args(tiny_corpus(tmp_path), steps=4) if "val_check_interval" not in item]
    main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args, "--trainer.val_check_interval=2"])
    rows = read_metrics(tmp_path)
    assert [int(row["step"]) for row in rows if row.get("val/bits_per_token")] == [2, 4]  # as the checkpoint counts
    assert [int(row["step"]) for row in rows if row.get("train/loss")] == [1, 2, 3, 4]
    summary = capsys.readouterr().out
    (metrics,) = tmp_path.glob("logs/lightning_logs/version_0/metrics.csv")
    picture = metrics.with_name("learning_curve.png")
    assert f"learning curve: {picture.relative_to(tmp_path)}" in summary and picture.stat().st_size > 1000
    curve = read_curve(metrics)
    losses = [float(row["train/loss"]) / math.log(2.0) for row in rows if row.get("train/loss")]
    assert [value for _, value in curve.train] == pytest.approx(losses)
    assert [step for step, _, _ in curve.validation] == [2, 4] and curve.unigram is not None
    out = tmp_path / "again.png"
    assert main(["plot", f"--metrics={metrics}", f"--out={out}"]) == out and out.stat().st_size > 1000
    assert "does not exist" in one_line_error(capsys, ["plot", f"--metrics={tmp_path / 'none.csv'}"])


def test_output_to_a_file_gets_plain_progress_lines_and_no_advertisement(tmp_path):
    corpus = tiny_corpus(tmp_path)
    args = [item for item in tiny_args(corpus, steps=4) if "enable_progress_bar" not in item]
    log = tmp_path / "run.log"
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, "-m", "training", "fit", "-c", str(CONFIGS / "sedd.yaml"), *args,
                                 f"--trainer.default_root_dir={tmp_path / 'logs'}", "--trainer.log_every_n_steps=2"],
                                stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text and "Tip:" not in text
    assert "deprecated" not in text and "Warning" not in text, text  # no third-party notices either
    assert "step 2/4" in text and "step 4/4" in text and "validation at step 4:" in text


def test_evaluate_prints_the_training_unigram_baseline_beside_the_texts_entropy(sedd_checkpoint, tmp_path, capsys):
    text = tmp_path / "sonnet.txt"
    text.write_text("Shall I compare thee to a summer's day? Thou art more lovely and more temperate.\n")
    result = main(["evaluate", f"--ckpt_path={sedd_checkpoint}", f"--text={text}", "--device=cpu", "--time_samples=2"])
    printed = capsys.readouterr().out
    assert "unigram model of the training blocks on this text" in printed
    assert "the text's own unigram entropy (a property of the text, not a model)" in printed
    data = read_checkpoint(sedd_checkpoint).data  # the blocks it was trained on, rebuilt by hand
    blocks = TextBlocks(**{key: value for key, value in data.items() if key not in ("batch_size", "num_workers")})
    unigram = unigram_log_probs(blocks.train, blocks.vocab_size)
    ids = torch.tensor([token for doc in document_ids(TextCorpus(str(text)), blocks.tokenizer) for token in doc])
    expected = float(-unigram[ids].sum()) / ids.numel()
    assert result.training_unigram_nats_per_token == pytest.approx(expected, rel=1e-12)
