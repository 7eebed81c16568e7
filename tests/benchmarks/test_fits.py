"""benchmarks.fits: the report's command line names no absolute path of this machine; a given checkpoint is used
as it is, with the steps it records."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks import fits


def test_report_command_writes_paths_relative_to_the_repository(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    argv = ["--ckpt", f"ar={tmp_path}/runs/ar/last.ckpt", f"--work_dir={fits.ROOT}/benchmarks/results/x", "--seed", "3"]
    command = fits.report_command("benchmarks.quality", argv)
    assert command == ("python -m benchmarks.quality --ckpt ar=runs/ar/last.ckpt "
                       "--work_dir=benchmarks/results/x --seed 3")
    assert str(tmp_path) not in command and str(fits.ROOT) not in command


def test_a_given_checkpoint_is_used_with_its_recorded_steps(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 12, "state_dict": {}}, path)
    training = fits.train("ar", "configs/ar.yaml", [], tmp_path, {}, given=str(path))
    assert (training.checkpoint, training.steps, training.reused, training.command) == (str(path), 12, True, None)


def test_reuse_takes_the_newest_last_checkpoint_and_its_record(tmp_path):
    for version in (0, 1):
        folder = tmp_path / "runs" / "sedd" / "lightning_logs" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        torch.save({"global_step": version}, folder / "last.ckpt")
    newest = tmp_path / "runs" / "sedd" / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    older = newest.parents[2] / "version_0" / "checkpoints" / "last.ckpt"
    older.touch()
    os.utime(newest, (older.stat().st_mtime + 10, older.stat().st_mtime + 10))
    (tmp_path / "runs" / "sedd" / "fit.json").write_text('{"command": ["x"], "wall_s": 2.5, "steps": 1}')
    training = fits.train("sedd", "configs/sedd.yaml", [], tmp_path, {}, reuse=True)
    assert Path(training.checkpoint) == newest
    assert (training.command, training.wall_s, training.steps, training.reused) == (["x"], 2.5, 1, True)
