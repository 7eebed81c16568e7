"""Multi-device validation through Lightning's DDP strategy on 2 CPU processes (gloo).

Reference: the single-process `validate` of the same checkpoint on the same data. The validation noise of a
sequence is seeded by its content (evaluation/bounds.py), the EMA weights are the checkpoint's, and the module
sums nats and tokens with torchmetrics (synchronised across processes at compute), so the aggregated
bits/token over 2 processes must equal the single-process value up to the float32 rounding of the network
and the order of the float64 sums: rel 1e-6.

The validation set has an even number of blocks (12): Lightning wraps the validation loader in a
`DistributedSampler`, which pads the set to a multiple of the world size by repeating its first blocks, so
with an odd count one block would be counted twice and the two values would differ by design.

`ddp` (not `ddp_spawn`) re-launches the command for rank 1, so it runs as a subprocess of `python -m training`
(the `lightning` command), as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fit_helpers import CONFIGS, make_checkpoint, read_metrics, tiny_args, tiny_corpus

from cli.main import main
from training.datamodule import TextDataModule

REPOSITORY = Path(__file__).resolve().parents[2]


def test_ddp_validation_matches_single_process(monkeypatch, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "fit")
    corpus = tiny_corpus(tmp_path)
    args = ["validate", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus), f"--ckpt_path={checkpoint}",
            "--trainer.limit_val_batches=1.0", "--model.val_time_samples=2"]
    blocks = len(TextDataModule(str(corpus), tokenizer="char", seq_len=16).val_dataset)
    assert blocks == 12  # even: no DistributedSampler padding (see the module docstring)

    single_root = tmp_path / "single"
    single_root.mkdir()
    monkeypatch.chdir(single_root)
    single = main(args).model.validation_result
    assert single["tokens"] == blocks * 16

    ddp_root = tmp_path / "ddp"
    ddp_root.mkdir()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "-m", "training", *args, "--trainer.devices=2", "--trainer.strategy=ddp"],
        cwd=ddp_root, env=environment, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Starting with 2 processes" in completed.stderr + completed.stdout  # Lightning's DDP banner
    (row,) = [row for row in read_metrics(ddp_root) if row.get("val/bits_per_token")]
    for key in ("bits_per_token", "nats_per_token", "perplexity_bound"):
        expected = single[key] if key != "nats_per_token" else single["nats"] / single["tokens"]
        assert abs(float(row[f"val/{key}"]) - expected) <= 1e-6 * expected, (key, row, single)
