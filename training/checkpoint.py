"""Checkpoints at every way a fit ends, written atomically next to their target, one full copy by default.

What is saved when (docs/training.md, "What is saved when"):
- every `every_n_train_steps` optimiser steps, and at each validation or epoch end that ModelCheckpoint
  would save at: `last.ckpt` (named top-k copies only when `save_top_k` or `monitor` is given);
- when training stops at `max_steps` / `max_epochs` (or any other normal stop): `last.ckpt`, whatever the
  interval, unless the last step was already saved;
- on Ctrl-C (SIGINT) or SIGTERM: the step being computed finishes, then `last.ckpt` is written and the run
  stops (a second Ctrl-C stops at once, with a checkpoint of whatever state the interrupt found);
- on an exception during fit: `last.ckpt` of the state the exception found (an exception raised inside the
  optimiser step itself may leave that step half-applied; the step counter then still names the previous step).

Why not Lightning's `OnExceptionCheckpoint` / `ModelCheckpoint(save_on_exception=True)`: both write a second,
differently named full checkpoint (`on_exception.ckpt` / `epoch=...-step=....ckpt`) beside `last.ckpt`, and
Lightning's KeyboardInterrupt path saves whatever state the interrupt lands in (possibly between the optimiser
step and the EMA update). Here every stop refreshes `last.ckpt`, the one file a resume names, and a first
Ctrl-C is turned into Lightning's own SIGTERM stop, which ends the run after the current batch.

Atomic writes: Lightning's `TorchCheckpointIO` writes through an fsspec transaction whose local implementation
stages the file with `tempfile.mkstemp()` in the system temporary directory and then moves it: a kill -9 during
the write leaves that temp file behind, and across file systems the move is a copy that can leave a truncated
target. `AtomicCheckpointIO` writes `<target>.partial` in the target's own directory, fsyncs it and
`os.replace`s it over the target (atomic within a file system): a reader sees the old checkpoint or the new one.
A failed write removes the partial file; only a kill -9 during the write can leave `<target>.partial` beside the
target (the next save of that checkpoint overwrites it). Nothing is written to the system temporary directory.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

TEMPORARY_SUFFIX = ".partial"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_CONNECTOR_LOGGER = "lightning.pytorch.trainer.connectors.signal_connector"  # logs "Received SIGTERM: N"


def _is_remote(path: str | Path) -> bool:
    text = str(path)
    return "://" in text and not text.startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves go to `<path>.partial` beside `path`, then `os.replace` over it.

    Remote paths (an fsspec protocol other than the local file system) keep Lightning's own write.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if _is_remote(path) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + TEMPORARY_SUFFIX)
        try:
            with open(temporary, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


class AtomicModelCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (same arguments) that writes `last.ckpt` atomically at every way a fit ends.

    Defaults that differ from ModelCheckpoint: save_last=True; save_top_k=None means 0 (no named copies,
    `last.ckpt` only) without a `monitor` and 1 with one; save_on_exception=True (refreshes `last.ckpt`, no
    extra file); enable_version_counter=False: a run resumed in its own folder overwrites its `last.ckpt`
    (ModelCheckpoint would write `last-v1.ckpt` beside it when its state was saved with other arguments). See the
    module docstring for what is saved when.
    """

    def __init__(
        self,
        *args: Any,
        save_last: bool | str | None = True,
        save_top_k: int | None = None,
        save_on_exception: bool = True,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        if save_top_k is None:
            save_top_k = 0 if kwargs.get("monitor") is None else 1
        super().__init__(*args, save_last=save_last, save_top_k=save_top_k, save_on_exception=save_on_exception,
                         enable_version_counter=enable_version_counter, **kwargs)
        self.stop_signal: signal.Signals | None = None  # the signal that stopped the last fit, if any
        self._previous_handlers: dict[signal.Signals, Any] = {}

    # ------------------------------------------------------------------------------------ atomic writes
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own plugin is left alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    # ------------------------------------------------------------------------- one full copy by default
    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        """With save_top_k=0 a save point still refreshes last.ckpt (ModelCheckpoint would then skip it)."""
        if self.save_top_k == 0:
            self._save_last_checkpoint(trainer, monitor_candidates)
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        already = (
            self._last_global_step_saved == trainer.global_step
            and self.last_model_path
            and self._last_checkpoint_saved == self.last_model_path
        )
        if not already:
            super()._save_last_checkpoint(trainer, monitor_candidates)

    # ------------------------------------------------------------------------------- every way it ends
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """max_steps / max_epochs / a requested stop: write last.ckpt unless this step is already saved."""
        self._restore_signal_handlers()
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """SIGINT / SIGTERM (Lightning's SIGTERMException) / any exception: refresh last.ckpt, no named copy."""
        self._restore_signal_handlers()
        if not self.save_last:
            super().on_exception(trainer, pl_module, exception)
            return
        if self.save_on_exception and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            cause = self.stop_signal.name if self.stop_signal is not None else type(exception).__name__
            print(f"{cause} at step {trainer.global_step}: saved {self.last_model_path}", file=sys.stderr)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_signal_handlers()
        super().teardown(trainer, pl_module, stage)

    # --------------------------------------------------------------------------------------- signals
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Route SIGINT and SIGTERM to Lightning's SIGTERM stop (after the current batch), recording which."""
        super().on_train_start(trainer, pl_module)
        self.stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; Lightning's defaults stay
        lightning_sigterm = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stop_signal is not None or not callable(lightning_sigterm):
                raise KeyboardInterrupt  # a second Ctrl-C, or no Lightning handler: stop at once
            self.stop_signal = signal.Signals(signum)
            print(f"\n{self.stop_signal.name}: stopping after this step and saving last.ckpt "
                  "(press Ctrl-C again to stop at once)", file=sys.stderr)
            # Lightning's handler sets trainer.received_sigterm and tells DDP's other processes; its log line
            # ("Received SIGTERM: 2" for a Ctrl-C) is silenced: the line above says what happened.
            signal_log = logging.getLogger(SIGNAL_CONNECTOR_LOGGER)
            disabled, signal_log.disabled = signal_log.disabled, True
            try:
                lightning_sigterm(signum, frame)
            finally:
                signal_log.disabled = disabled

        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def _restore_signal_handlers(self) -> None:
        while self._previous_handlers:
            signum, previous = self._previous_handlers.popitem()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signum, previous)
