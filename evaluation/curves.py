"""The learning curve of a run, from its metrics.csv: training loss and validation bound in bits/token.

`read_curve(path)` reads the rows `lightning fit` logged (training.run_logger: `step` is the number of optimiser
steps taken) into a `Curve`; `plot_curve(curve, out)` draws the training objective (train/loss, nats per token,
shown in bits: / ln 2), the validation bound (val/bits_per_token) with one standard error (val/bits_per_token_se)
as error bars, and the unigram model of the training blocks on the same validation blocks
(val/unigram_bits_per_token) as a horizontal line: the level a model must beat. The title names the run folder,
never an absolute path.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Curve:
    """Columns of a run's metrics: (step, value) pairs per quantity, in bits/token."""

    name: str
    train: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float, float | None]] = field(default_factory=list)  # step, bits, SE
    unigram: float | None = None


def _number(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def read_curve(path: str | Path) -> Curve:
    """The learning curve in the metrics.csv at `path`; ValueError (one line naming --metrics) if it is missing or
    holds no training or validation row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--metrics: {str(path)!r} does not exist; give the metrics.csv of a run (lightning fit "
                         "prints where it is)")
    curve = Curve(name="/".join(path.parts[-3:-1]))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row["step"]))
            loss = _number(row.get("train/loss"))
            if loss is not None:
                curve.train.append((step, loss / math.log(2.0)))
            bits = _number(row.get("val/bits_per_token"))
            if bits is not None:
                curve.validation.append((step, bits, _number(row.get("val/bits_per_token_se"))))
            unigram = _number(row.get("val/unigram_bits_per_token"))
            if unigram is not None:
                curve.unigram = unigram
    if not curve.train and not curve.validation:
        raise ValueError(f"--metrics: {str(path)!r} holds no train/loss or val/bits_per_token row; train for at least "
                         "trainer.log_every_n_steps steps")
    return curve


def plot_curve(curve: Curve, out: str | Path) -> Path:
    """Draw `curve` into the PNG file `out` (matplotlib, no display needed); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    if curve.train:
        steps, values = zip(*curve.train, strict=True)
        axes.plot(steps, values, color="0.6", linewidth=1, label="training objective (train/loss / ln 2)")
    if curve.validation:
        steps, values, errors = zip(*curve.validation, strict=True)
        axes.errorbar(steps, values, yerr=[0.0 if e is None else e for e in errors], color="C0", marker="o",
                      capsize=3, label="validation bound (val/bits_per_token, +- 1 SE)")
    if curve.unigram is not None:
        axes.axhline(curve.unigram, color="C3", linestyle="--", linewidth=1,
                     label="unigram model of the training blocks")
    axes.set_xlabel("optimiser steps")
    axes.set_ylabel("bits per token")
    axes.set_title(f"learning curve: {curve.name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
