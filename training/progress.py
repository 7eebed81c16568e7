"""`LineProgressBar`: one plain line of progress every N optimiser steps, for output that is not a terminal.

Lightning's TQDM bar redraws itself with carriage returns many times a second; written to a file or a pipe that is
hundreds of kilobytes of partial lines. This progress bar (a Lightning `ProgressBar`, so it replaces the TQDM one)
prints, on stderr, `step 150/600  loss 8.1234  12.3 steps/s` every `every_n_steps` steps and one line per
validation with its bits/token. The training command uses it when stderr is not a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar

from ctmc.checks import check_int


class LineProgressBar(ProgressBar):
    """A progress line every `every_n_steps` optimiser steps and after each validation (stderr, rank 0 only)."""

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__()
        self.every_n_steps = check_int("every_n_steps", every_n_steps, 1)
        self._enabled = True
        self._since = time.perf_counter()
        self._since_step = 0

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since, self._since_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps and step != trainer.max_steps:
            return
        elapsed = time.perf_counter() - self._since
        rate = (step - self._since_step) / elapsed if elapsed > 0 else float("nan")
        self._since, self._since_step = time.perf_counter(), step
        loss = trainer.callback_metrics.get("train/loss")
        total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        shown = "" if loss is None else f"  loss {float(loss):.4f}"
        self._print(trainer, f"step {step}{total}{shown}  {rate:.2f} steps/s")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        result = getattr(pl_module, "validation_result", None) or {}
        if "bits_per_token" in result:
            se = result.get("bits_per_token_se")
            error = "" if se is None else f" +- {se:.4f}"
            self._print(trainer, f"validation at step {trainer.global_step}: {result['bits_per_token']:.4f}{error} "
                                 "bits/token")
