"""Atomic checkpoints: write to a temporary file in the target directory, then rename over the target.

Lightning writes a checkpoint through an fsspec transaction, whose local implementation writes to a file
made by `tempfile.mkstemp()` in the system temporary directory and then `shutil.move`s it: when the log
directory is on another file system that move is a copy, and a crash part-way leaves a truncated
`last.ckpt`. `AtomicModelCheckpoint` writes next to the target and uses `os.replace`, which POSIX makes
atomic within one file system: a reader sees the old checkpoint or the new one, never a partial file.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

TEMPORARY_SUFFIX = ".partial"


class AtomicModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (same arguments, here with save_last=True by default) whose writes are atomic.

    Remote paths (an fsspec protocol other than the local file system) keep Lightning's own write.
    """

    def __init__(self, *args, save_last: bool | str | None = True, **kwargs) -> None:
        super().__init__(*args, save_last=save_last, **kwargs)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if "://" in str(filepath) and not str(filepath).startswith("file://"):
            super()._save_checkpoint(trainer, filepath)
            return
        temporary = f"{filepath}{TEMPORARY_SUFFIX}"
        trainer.save_checkpoint(temporary, self.save_weights_only)  # every rank calls; rank 0 writes
        if trainer.is_global_zero:
            os.replace(temporary, filepath)
        trainer.strategy.barrier("AtomicModelCheckpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
