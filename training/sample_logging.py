"""`SampleLogger`: every N optimiser steps, write decoded samples and their unigram entropy to a text file.

The file is `<logger log_dir>/samples.txt` (appended). A collapsing model shows up as a falling unigram
entropy (repeated tokens) long before it shows in the loss.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

import samplers
from evaluation.seeding import seeded_generator


class SampleLogger(Callback):
    """every_n_steps: 0 disables; num_samples sequences of `length` tokens (None: the data's seq_len).

    Samples come from the module's sampler and EMA weights, on global rank 0 only, with a generator seeded
    by (seed, step), so that they are reproducible. Tokens are decoded with the data module's tokenizer.
    """

    def __init__(
        self, every_n_steps: int = 0, num_samples: int = 2, length: int | None = None, filename: str = "samples.txt"
    ) -> None:
        for name, value, minimum in (("every_n_steps", every_n_steps, 0), ("num_samples", num_samples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"samples.{name} must be an int >= {minimum}, got {value!r}")
        if length is not None and (not isinstance(length, int) or length < 1):
            raise ValueError(f"samples.length must be None or an int >= 1, got {length!r}")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.length = length
        self.filename = filename
        self._last_step = -1

    def path(self, trainer: pl.Trainer) -> str:
        """Where the samples are written: the first logger's log_dir, else the trainer's default_root_dir."""
        directory = trainer.loggers[0].log_dir if trainer.loggers else None
        return os.path.join(directory or trainer.default_root_dir, self.filename)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps == 0 or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        if trainer.is_global_zero:
            self.write(trainer, pl_module, step)

    def write(self, trainer: pl.Trainer, pl_module: Any, step: int) -> str:
        """Sample, decode and append to path(trainer); returns the text written."""
        datamodule = trainer.datamodule
        length = self.length or datamodule.hparams.seq_len
        generator = seeded_generator(pl_module.device, pl_module.seed, step)
        tokens = pl_module.generate(self.num_samples, length, generator=generator)
        clean = tokens.clamp(max=datamodule.vocab_size - 1)  # a mask left by a sampler reads as end-of-text
        lines = [f"=== step {step}: unigram entropy {samplers.unigram_entropy(tokens):.3f} nats ==="]
        for index, row in enumerate(clean.tolist()):
            lines.append(f"--- sample {index} ---\n{datamodule.tokenizer.decode(row)}")
        text = "\n".join(lines) + "\n"
        path = self.path(trainer)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
        return text
