"""Every bad --ckpt_path given to fit, validate, sample and evaluate (issue 13): one line `error: ...` on
stderr, exit status 2, no traceback, and no file or directory created (no stray version_N/config.yaml).

The bad files are made from real tiny checkpoints (a 2-step fit of test_sample.make_checkpoint): cut in half,
replaced by text or by a pickle of other objects, another model kind (the RADD denoiser's weights for the
SEDD DiT) and another vocabulary (the stored vocab_size changed to GPT-2's).
"""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, make_checkpoint, tiny_args, tiny_corpus

from cli.main import main
from models.pretrained.native import CONFIG_KEY

CASES = ["missing", "directory", "truncated", "foreign pickle", "text file", "other model kind", "other vocabulary"]
COMMANDS = ["fit", "validate", "sample", "evaluate"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """The bad checkpoint of each case, and the files that the commands need."""
    root = tmp_path_factory.mktemp("bad")
    sedd = make_checkpoint(root / "sedd")
    radd = make_checkpoint(root / "radd", "radd.yaml", "models.RADDDenoiser")
    files = root / "files"
    files.mkdir()
    data = sedd.read_bytes()
    (files / "half.ckpt").write_bytes(data[: len(data) // 2])
    (files / "text.ckpt").write_text("hello\n", encoding="utf-8")
    with open(files / "foreign.ckpt", "wb") as handle:
        pickle.dump({"state_dict": {"when": datetime.date(2024, 1, 1)}}, handle)
    checkpoint = torch.load(sedd, weights_only=True)
    (files / "sedd-config.yaml").write_text(checkpoint[CONFIG_KEY]["config"], encoding="utf-8")
    checkpoint[CONFIG_KEY]["vocab_size"] = 50257  # as if trained with the GPT-2 tokenizer
    torch.save(checkpoint, files / "gpt2.ckpt")
    return {
        "missing": files / "no-such.ckpt",
        "directory": root / "sedd" / "logs",
        "truncated": files / "half.ckpt",
        "foreign pickle": files / "foreign.ckpt",
        "text file": files / "text.ckpt",
        "other model kind": radd,
        "other vocabulary": files / "gpt2.ckpt",
        "sedd config": files / "sedd-config.yaml",
        "corpus": tiny_corpus(root),
    }


def command_line(command: str, case: str, made: dict[str, Path], workdir: Path) -> list[str]:
    path = made[case]
    if command in ("fit", "validate"):
        return [command, "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(made["corpus"]), f"--ckpt_path={path}"]
    options = [f"--ckpt_path={path}", "--device=cpu", f"--output={workdir / 'out.txt'}"]
    if case == "other model kind":  # the SEDD model's config with the RADD checkpoint's weights
        options.append(f"--config={made['sedd config']}")
    if command == "sample":
        return ["sample", *options, "--steps=2", "--num_samples=1"]
    return ["evaluate", *options, f"--text={made['corpus']}"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_checkpoint_is_one_line_error_and_creates_nothing(command, case, made, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main(command_line(command, case, made, tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no logs/, no version_N/config.yaml, no output file
    message = errors[0]
    expected = {
        "missing": "does not exist",
        "directory": "is a directory",
        "truncated": "not a readable checkpoint",
        "foreign pickle": "not a readable checkpoint",
        "text file": "(not a PyTorch archive)",
        "other model kind": "weights",
        "other vocabulary": "vocab_size",
    }[case]
    assert expected in message, message
    if case == "directory":
        assert "last.ckpt" in message  # names a checkpoint found inside it


def test_weights_only_checkpoint_cannot_resume_fit(made, capsys, monkeypatch, tmp_path):
    """A checkpoint without optimiser and loop state (save_weights_only) is refused by fit, on one line."""
    monkeypatch.chdir(tmp_path)
    checkpoint = torch.load(made["other vocabulary"], weights_only=True)
    checkpoint[CONFIG_KEY]["vocab_size"] = 257
    for key in ("optimizer_states", "loops", "lr_schedulers"):
        checkpoint.pop(key, None)
    torch.save(checkpoint, tmp_path / "weights.ckpt")
    before = sorted(tmp_path.rglob("*"))
    weights = tmp_path / "weights.ckpt"
    args = ["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(made["corpus"]), f"--ckpt_path={weights}"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "weights only" in errors[0]
    assert sorted(tmp_path.rglob("*")) == before
