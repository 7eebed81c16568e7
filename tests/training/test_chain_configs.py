"""configs/d3pm.yaml (D3PM through the shared training path) and configs/sedd-hybrid.yaml (the hybrid chain of
ctmc/hybrid.py) train 20 steps from the CLI with a tiny model and leave a checkpoint with finite losses."""

from __future__ import annotations

import pytest
import torch
import yaml
from fit_helpers import CONFIGS, read_metrics, tiny_args, tiny_corpus

from cli.main import main
from models.pretrained.native import CONFIG_KEY

STEPS = 20


@pytest.mark.parametrize("config", ["d3pm.yaml", "sedd-hybrid.yaml"])
def test_print_config(config, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"trainer", "model", "data", "checkpoint", "samples"} <= set(printed)


@pytest.mark.parametrize(("config", "loss"), [("d3pm.yaml", "D3PMLoss"), ("sedd-hybrid.yaml", "ScoreEntropy")])
def test_twenty_steps_from_the_cli_leave_a_checkpoint(config, loss, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", "-c", str(CONFIGS / config), *tiny_args(tiny_corpus(tmp_path), steps=STEPS)])
    assert cli.trainer.global_step == STEPS
    assert type(cli.model.loss).__name__ == loss
    rows = read_metrics(tmp_path)
    logged = torch.tensor([float(row["train/loss"]) for row in rows if row.get("train/loss")])
    assert logged.numel() == STEPS and bool(torch.isfinite(logged).all())
    bits = [float(row["val/bits_per_token"]) for row in rows if row.get("val/bits_per_token")]
    assert len(bits) == 1 and 0.0 < bits[0] < 100.0
    (last,) = tmp_path.glob("logs/lightning_logs/version_*/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == STEPS and checkpoint[CONFIG_KEY]["vocab_size"] == 257
