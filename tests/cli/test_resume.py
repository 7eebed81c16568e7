"""Resume exactness: N steps uninterrupted vs N/2 steps + resume from last.ckpt for N/2, same seed.

Reference: the uninterrupted run's logged per-step train losses; the resumed run must reproduce them to
float32 rounding (rel 1e-6), which needs the per-step noise seeded by (seed, batch index, rank), the EMA
in the checkpoint and the shuffle reseeded per epoch. The resumed run continues in its own folder: one
metrics.csv with the whole curve (rows labelled by optimiser steps taken, 1..N) and one last.ckpt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, read_metrics, tiny_args, tiny_corpus

from cli.main import main

# 150 characters + end-of-text: 9 blocks of 16 tokens; 1 validation block, 8 training blocks = 2 batches of 4.
TEXT = "abcdefghij klmnopqrst uvwxyz ABCDEFGHIJ KLMNOPQRST UVWXYZ 0123456789 ,.;:!? " * 2


def train_losses(root: Path) -> dict[int, float]:
    """step -> logged train/loss, merged over every run (version_*) under root."""
    losses = {}
    for version in sorted(root.glob("logs/lightning_logs/version_*")):
        rows = read_metrics(version.parent.parent.parent, version.name)
        losses.update({int(row["step"]): float(row["train/loss"]) for row in rows if row.get("train/loss")})
    return losses


def run(root: Path, corpus: Path, max_epochs: int, extra: list[str]) -> None:
    args = [*tiny_args(corpus, steps=4), f"--trainer.max_epochs={max_epochs}", "--trainer.limit_val_batches=0",
            "--model.decay=cosine", "--model.ema_decay=0.5", "--checkpoint.every_n_train_steps=1", *extra]
    main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args])


def test_resume_reproduces_the_uninterrupted_loss_curve(monkeypatch, tmp_path):
    corpus = tiny_corpus(tmp_path, TEXT)
    whole, first = tmp_path / "whole", tmp_path / "first"
    whole.mkdir()
    first.mkdir()
    monkeypatch.chdir(whole)
    run(whole, corpus, max_epochs=2, extra=[])
    monkeypatch.chdir(first)
    run(first, corpus, max_epochs=1, extra=[])
    (last,) = first.glob("logs/lightning_logs/version_0/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 2
    run(first, corpus, max_epochs=2, extra=[f"--ckpt_path={last}"])

    expected = train_losses(whole)
    resumed = train_losses(first)
    assert sorted(expected) == [1, 2, 3, 4]
    assert sorted(resumed) == [1, 2, 3, 4]
    assert [path.name for path in first.glob("logs/lightning_logs/*")] == ["version_0"]  # the same run folder
    assert len(list(first.glob("logs/**/*.ckpt"))) == 1
    for step in expected:
        assert abs(resumed[step] - expected[step]) <= 1e-6 * abs(expected[step]), (step, resumed, expected)
    # the final weights (network and EMA) agree as well
    (whole_last,) = whole.glob("logs/lightning_logs/version_0/checkpoints/last.ckpt")
    (first_last,) = first.glob("logs/lightning_logs/version_0/checkpoints/last.ckpt")
    a = torch.load(whole_last, weights_only=True)["state_dict"]
    b = torch.load(first_last, weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the point of --new_version
def test_resume_into_a_new_version_when_asked(monkeypatch, tmp_path):
    """--new_version keeps the first run's folder as it was and logs the resumed steps in version_1."""
    corpus = tiny_corpus(tmp_path, TEXT)
    monkeypatch.chdir(tmp_path)
    run(tmp_path, corpus, max_epochs=1, extra=[])
    (last,) = tmp_path.glob("logs/lightning_logs/version_0/checkpoints/last.ckpt")
    run(tmp_path, corpus, max_epochs=2, extra=[f"--ckpt_path={last}", "--new_version=true"])
    first = [int(row["step"]) for row in read_metrics(tmp_path, "version_0") if row.get("train/loss")]
    second = [int(row["step"]) for row in read_metrics(tmp_path, "version_1") if row.get("train/loss")]
    assert first == [1, 2] and second == [3, 4]


def test_rows_after_the_resumed_step_are_replaced_not_duplicated(monkeypatch, tmp_path):
    """A run that logged past its last checkpoint and is resumed from it: the rows after the checkpoint's step are
    dropped and logged again by the resumed run, once each, with the resumed run's values."""
    corpus = tiny_corpus(tmp_path, TEXT)
    monkeypatch.chdir(tmp_path)
    run(tmp_path, corpus, max_epochs=1, extra=[])
    checkpoints = tmp_path / "logs/lightning_logs/version_0/checkpoints"
    at_two = (checkpoints / "last.ckpt").read_bytes()  # step 2
    run(tmp_path, corpus, max_epochs=2, extra=[f"--ckpt_path={checkpoints / 'last.ckpt'}"])  # rows 3, 4 logged
    (checkpoints / "last.ckpt").write_bytes(at_two)  # as if the run had died after step 4 with its last save at 2
    run(tmp_path, corpus, max_epochs=2, extra=[f"--ckpt_path={checkpoints / 'last.ckpt'}"])
    steps = [int(row["step"]) for row in read_metrics(tmp_path) if row.get("train/loss")]
    assert steps == [1, 2, 3, 4]
