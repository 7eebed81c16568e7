"""`RunCSVLogger`: Lightning's CSVLogger that continues a resumed run's metrics.csv.

Rows are labelled by the optimiser steps taken when they were logged (`trainer.global_step`: the validation after
150 steps is at step 150, as the checkpoint, the sample logger and the end-of-fit summary count); the training
module logs that number as the `step` metric, which every Lightning logger uses as the row's step.

Resuming: a fit resumed from `<root>/<name>/version_N/checkpoints/last.ckpt` logs into the same version_N folder
(the command sets `version` and `resume_step`). Lightning's writer deletes an existing metrics.csv there; this one
keeps its rows up to the resumed step and appends the new ones, so that one file holds the whole curve. Rows
after the resumed step (logged by the interrupted run after its last checkpoint) are dropped: the resumed run logs
those steps again.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.csv_logs import _ExperimentWriter as FabricWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _KeepingWriter(ExperimentWriter):
    """ExperimentWriter that keeps an existing metrics.csv's rows up to `resume_step` instead of deleting the file."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.resume_step is None or not self._fs.isfile(self.metrics_file_path):
            FabricWriter._check_log_dir_exists(self)
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            reader = csv.DictReader(handle)
            keys = list(reader.fieldnames or [])
            kept = [row for row in reader if int(float(row["step"])) <= self.resume_step]
        with self._fs.open(self.metrics_file_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = sorted(keys)


class RunCSVLogger(CSVLogger):
    """CSVLogger (same arguments) and `resume_step`: when set, an existing metrics.csv in the version folder keeps
    its rows up to that step and new rows are appended."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir, resume_step=self.resume_step)
        return self._experiment
