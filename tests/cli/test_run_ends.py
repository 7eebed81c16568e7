"""A checkpoint at every way a fit ends (issue 13), and a resume from each continues the run.

References: the checkpoint's own `global_step` (what Lightning resumes from) against the step at which the
run ended, the logged train steps of the resumed run (they start where the checkpoint stopped and reach the
new max_steps), and the files present in the checkpoint directory and the system temporary directory.
Runs use the tiny model and corpus of test_cli (a few seconds each).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, read_metrics, tiny_args, tiny_corpus
from test_resume import TEXT

from cli.main import main
from training.checkpoint import SIGNAL_CONNECTOR_LOGGER
from training.module import DiffusionModule

ROOT = Path(__file__).resolve().parents[2]
# These runs stop mid-epoch on purpose and resume with another checkpoint interval; Lightning says so each time.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create"),
]


def fit(corpus: Path, steps: int, *extra: str):
    return main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus, steps=steps), *extra])


def checkpoints(root: Path, version: str = "version_0") -> list[str]:
    return sorted(path.name for path in root.glob(f"logs/lightning_logs/{version}/checkpoints/*"))


def last_step(root: Path, version: str = "version_0") -> int:
    path = root / "logs/lightning_logs" / version / "checkpoints/last.ckpt"
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def assert_resume_continues(root: Path, corpus: Path, start: int, steps: int) -> None:
    """Resume from version_0's last.ckpt (at step `start`) to max_steps=steps: it trains steps - start more
    optimiser steps in the same folder (one train row each, appended to version_0's metrics after `start`) and
    saves the final one as the folder's one last.ckpt."""
    last = root / "logs/lightning_logs/version_0/checkpoints/last.ckpt"
    cli = fit(corpus, steps, f"--ckpt_path={last}")
    assert cli.exit_status == 0 and cli.trainer.global_step == steps
    logged = sorted(int(row["step"]) for row in read_metrics(root, "version_0") if row.get("train/loss"))
    assert [step for step in logged if step > start] == list(range(start + 1, steps + 1)), logged
    assert last_step(root, "version_0") == steps
    assert checkpoints(root) == ["last.ckpt"] and not (root / "logs/lightning_logs/version_1").exists()


class RecordedLog(logging.Handler):
    """The messages of the records a logger emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def interrupt_at(monkeypatch, step: int, action) -> None:
    """Call action() at the start of the training batch that begins at global step `step`."""
    original = DiffusionModule.on_train_batch_start

    def on_train_batch_start(self, batch, batch_idx):
        if self.trainer.global_step == step:
            action()
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DiffusionModule, "on_train_batch_start", on_train_batch_start)


def test_max_steps_off_the_interval_saves_the_last_step_and_resumes(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    fit(corpus, 5, "--checkpoint.every_n_train_steps=2")
    assert last_step(tmp_path) == 5  # not 4, the last multiple of the interval
    assert_resume_continues(tmp_path, corpus, 5, 7)


def test_max_epochs_off_the_interval_saves_the_last_step(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path, TEXT)  # 2 training batches per epoch
    fit(corpus, -1, "--trainer.max_epochs=2", "--trainer.val_check_interval=null",
        "--trainer.check_val_every_n_epoch=1", "--checkpoint.every_n_train_steps=3")
    assert last_step(tmp_path) == 4


def test_default_keeps_one_full_checkpoint_and_top_k_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    fit(corpus, 2)  # validation at step 2 is a ModelCheckpoint save point
    assert checkpoints(tmp_path) == ["last.ckpt"]
    fit(corpus, 2, "--checkpoint.monitor=val/bits_per_token", "--checkpoint.filename=best")
    assert checkpoints(tmp_path, "version_1") == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_after_the_step_saves_and_resumes(signum, status, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    interrupt_at(monkeypatch, 2, lambda: os.kill(os.getpid(), signum))
    handler_before = signal.getsignal(signum)
    heard = RecordedLog()
    logging.getLogger(SIGNAL_CONNECTOR_LOGGER).addHandler(heard)
    try:
        cli = fit(corpus, 8, "--checkpoint.every_n_train_steps=null")
    finally:
        logging.getLogger(SIGNAL_CONNECTOR_LOGGER).removeHandler(heard)
    assert not [text for text in heard.messages if "Received SIGTERM" in text]  # our line names the signal
    assert cli.exit_status == status
    assert cli.trainer.global_step == 3  # the step under way when the signal came was completed
    assert last_step(tmp_path) == 3
    output = capsys.readouterr().out
    assert f"stopped by {signum.name} at step 3" in output and "resume it:" in output
    assert signal.getsignal(signum) == handler_before  # the handlers of the process are given back
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert_resume_continues(tmp_path, corpus, 3, 6)


def test_exception_saves_last_checkpoint_and_resumes(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)

    def broken():
        raise RuntimeError("a failure in training")

    interrupt_at(monkeypatch, 3, broken)
    with pytest.raises(RuntimeError, match="a failure in training"):
        fit(corpus, 8, "--checkpoint.every_n_train_steps=null")
    assert last_step(tmp_path) == 3
    assert checkpoints(tmp_path) == ["last.ckpt"]  # no second, differently named copy
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert_resume_continues(tmp_path, corpus, 3, 5)


def test_checkpoints_are_not_staged_in_the_system_temp_dir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    staged = []
    original = tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        staged.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    fit(corpus, 3, "--checkpoint.every_n_train_steps=1")
    assert last_step(tmp_path) == 3
    assert staged == []  # Lightning's fsspec transaction would stage each write with mkstemp()
    assert not list(tmp_path.rglob("*.partial"))


KILLED_WRITE = """
import os, signal, sys, torch
from training.checkpoint import AtomicCheckpointIO
io, target = AtomicCheckpointIO(), sys.argv[1]
io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, target)
def dying_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\\x03\\x04 half a checkpoint")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 2}, target)
"""


def test_kill_during_a_write_leaves_the_old_checkpoint_and_only_a_partial_file_beside_it(tmp_path):
    """The documented remnant of kill -9 during a save: `<target>.partial` next to an intact target."""
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    target = tmp_path / "checkpoints" / "last.ckpt"
    environment = {**os.environ, "TMPDIR": str(system_temp), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target)], env=environment, cwd=str(ROOT),
                            capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert torch.load(target, weights_only=True)["global_step"] == 1
    assert sorted(path.name for path in target.parent.iterdir()) == ["last.ckpt", "last.ckpt.partial"]
    assert list(system_temp.iterdir()) == []


def test_second_ctrl_c_stops_at_once_and_still_saves(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    handler_before = signal.getsignal(signal.SIGINT)

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    interrupt_at(monkeypatch, 2, twice)
    with pytest.raises(SystemExit) as exit_info:  # Lightning's KeyboardInterrupt path: exit status 1
        fit(corpus, 8, "--checkpoint.every_n_train_steps=null")
    assert exit_info.value.code == 1
    assert last_step(tmp_path) == 2  # the batch at step 2 was not trained
    assert signal.getsignal(signal.SIGINT) == handler_before
