"""Shared by the tests of the commands and of the training path: a tiny corpus, tiny-model command-line
overrides, the metrics of a run, and checkpoints of 2-step fits (tests/ is on sys.path: pytest puts the folder of
tests/conftest.py there)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from cli.main import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(60))


def tiny_corpus(directory: Path, text: str = TEXT) -> Path:
    """A small text file (about 4,000 characters) in `directory`."""
    path = directory / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return path


CLASS_TEXTS = {  # a labelled corpus: one directory per class, one file each (data/labels.py, labels: directory)
    "comedy": "".join(f"Jest {i}: a merry fool laughs and sings, hey nonny {i % 7}.\n" for i in range(40)),
    "tragedy": "".join(f"Woe {i}: the dying king weeps blood and falls, alas {i % 5}.\n" for i in range(40)),
}


# A high learning rate, no weight averaging and 4 steps, so that the label embedding of a labelled fit has moved from
# its zero start (the zero output head and adaLN-Zero pass it no gradient before the third step).
LABELLED_FIT = ("--model.ema_decay=0.0", "--model.lr=0.05", "--model.warmup_steps=0", "--trainer.max_steps=4",
                "--trainer.val_check_interval=4")


def labelled_corpus(directory: Path) -> Path:
    """directory/classes/<class>/<class>.txt for each class of CLASS_TEXTS (about 2,300 characters each)."""
    root = directory / "classes"
    for name, text in CLASS_TEXTS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{name}.txt").write_text(text, encoding="utf-8")
    return root


def tiny_args(corpus: Path, network: str = "models.DiT", steps: int = 2) -> list[str]:
    """Command-line overrides for a 1-layer, 32-wide network on the byte tokenizer, 16-token blocks."""
    args = [
        f"--model.network={network}",
        "--model.network.hidden_size=32",
        "--model.network.num_layers=1",
        "--model.network.num_heads=2",
        "--model.network.max_length=32",
        "--model.network.dropout=0.0",
        f"--data.paths={corpus}",
        "--data.tokenizer=char",
        "--data.seq_len=16",
        "--data.batch_size=4",
        "--data.num_workers=0",
        f"--trainer.max_steps={steps}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.strategy=auto",
        "--trainer.precision=32-true",
        "--trainer.accumulate_grad_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_val_batches=2",
        f"--trainer.val_check_interval={steps}",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.log_every_n_steps=1",
        "--model.warmup_steps=1",
        "--checkpoint.every_n_train_steps=null",
        "--samples.every_n_steps=0",
    ]
    if network == "models.DiT":
        args.append("--model.network.cond_dim=16")
    return args


def read_metrics(root: Path, version: str = "version_*") -> list[dict[str, str]]:
    """Rows of the (only) metrics.csv of `version` under root/logs."""
    (path,) = sorted(root.glob(f"logs/lightning_logs/{version}/metrics.csv"))
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def make_checkpoint(root: Path, config: str = "sedd.yaml", network: str = "models.DiT", *extra: str) -> Path:
    """last.ckpt of a 2-step fit of a 1-layer, 32-wide network on the char tokenizer (seq_len 16) in root;
    `extra` command-line overrides follow the tiny ones."""
    root.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(root)
    try:
        main(["fit", "-c", str(CONFIGS / config), *tiny_args(tiny_corpus(root), network), *extra])
    finally:
        os.chdir(previous)
    (last,) = root.glob("logs/lightning_logs/version_*/checkpoints/last.ckpt")
    return last


def make_labelled_checkpoint(root: Path, corpus: Path, config: str, network: str, *extra: str) -> Path:
    """make_checkpoint in root on a labelled_corpus with data.labels: directory (classes comedy and tragedy)."""
    return make_checkpoint(root, config, network, f"--data.paths={corpus}", "--data.labels=directory", *extra)


def one_line_error(capsys, args: list[str]) -> str:
    """The one `error:` line of a command that must fail with exit status 2 and no traceback (fit may log its
    start before it)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]
