"""End-to-end tests of the `lightning` command (cli.fit.main), run in-process on a tiny model and corpus.

Every config in configs/ must pass --print_config and train for 2 steps with tiny-model overrides; bad input
must fail before training with one line that names what to change.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml
from fit_helpers import CONFIGS, read_metrics, tiny_args, tiny_corpus

from cli.main import main
from models.pretrained.native import CONFIG_KEY, import_object
from training.base_module import TrainingModule


@pytest.mark.parametrize("config", ["sedd.yaml", "radd.yaml", "sedd-uniform.yaml", "sedd-small-gpu.yaml", "ar.yaml",
                                    "bd3lm.yaml", "sedd-genre.yaml", "radd-genre.yaml", "classifier-genre.yaml"])
def test_print_config_lists_every_section(config, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {"trainer", "model", "data", "checkpoint", "samples"} <= set(printed)
    model = printed["model"]["init_args"]  # the objective's class_path (training.module.DiffusionModule by default)
    assert printed["model"]["class_path"].startswith("training.")
    assert "vocab_size" not in model and "class_names" not in model  # linked from the data module, written once
    assert model["network"]["class_path"].startswith("models.")
    # every constructor argument of the module and of TrainingModule (the shared ones, declared there once)
    module_class = import_object(printed["model"]["class_path"], "test")
    expected = {name for cls in (module_class, TrainingModule) for name in inspect.signature(cls).parameters}
    assert expected - {"vocab_size", "class_names", "shared"} == set(model)


@pytest.mark.parametrize(
    ("config", "network"),
    [
        ("sedd.yaml", "models.DiT"),
        ("radd.yaml", "models.RADDDenoiser"),
        ("sedd-uniform.yaml", "models.DiT"),
        ("sedd-small-gpu.yaml", "models.DiT"),
        ("ar.yaml", "models.ARTransformer"),
        ("bd3lm.yaml", "models.BlockDenoiser"),
    ],
)
def test_two_step_smoke_run_writes_metrics_and_checkpoint(config, network, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    cli = main(["fit", "-c", str(CONFIGS / config), *tiny_args(corpus, network)])
    assert cli.trainer.global_step == 2
    rows = read_metrics(tmp_path)
    losses_logged = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    assert len(losses_logged) == 2 and all(torch.isfinite(torch.tensor(losses_logged)))
    bits = [float(row["val/bits_per_token"]) for row in rows if row.get("val/bits_per_token")]
    assert len(bits) == 1 and 0.0 < bits[0] < 100.0
    (last,) = tmp_path.glob("logs/lightning_logs/version_*/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True, map_location="cpu")  # no pickled objects
    assert checkpoint[CONFIG_KEY]["vocab_size"] == 257
    assert checkpoint[CONFIG_KEY]["kind"] == ("autoregressive" if config == "ar.yaml" else "diffusion")
    stored = yaml.safe_load(checkpoint[CONFIG_KEY]["config"])
    assert stored["model"]["init_args"]["network"]["class_path"] == network
    assert any(key.startswith("ema.") for key in checkpoint["state_dict"])
    assert not list(tmp_path.rglob("*.partial"))  # atomic writes leave no temporary file


def test_sample_logger_writes_decoded_samples(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    args = [*tiny_args(corpus), "--samples.every_n_steps=1", "--samples.num_samples=2", "--samples.length=8"]
    main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args, "--model.sampler=samplers.EulerSampler",
          "--model.sampler.steps=4"])
    (path,) = tmp_path.glob("logs/lightning_logs/version_*/samples.txt")
    text = path.read_text(encoding="utf-8")
    assert text.count("=== step") == 2 and text.count("--- sample") == 4
    assert "unigram entropy" in text


def one_line_error(capsys) -> str:
    """The stderr of a failed command: exactly one line starting with 'error:'."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def run_failing(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return one_line_error(capsys)


def test_missing_corpus_is_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = tiny_args(tmp_path / "no-such-file.txt")
    message = run_failing(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args], capsys)
    assert "paths" in message and "no-such-file.txt" in message
    assert not (tmp_path / "logs").exists()  # nothing started


def test_empty_corpus_is_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path, text="")
    message = run_failing(["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus)], capsys)
    assert "paths" in message


def test_unknown_config_key_is_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [*tiny_args(tiny_corpus(tmp_path)), "--model.learning_rate=0.1"]
    message = run_failing(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args], capsys)
    assert "learning_rate" in message


def test_sequence_longer_than_network_is_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [*tiny_args(tiny_corpus(tmp_path)), "--data.seq_len=64"]
    message = run_failing(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args], capsys)
    assert "data.seq_len=64" in message and "max_length=32" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--model.network.init_args.block_size=5", "--model.loss.init_args.block_size=5"],
         "model.network.init_args.block_size=5 does not divide data.seq_len=16"),
        (["--model.loss.init_args.block_size=8"], "model.network.init_args.block_size=4 and "
         "model.loss.init_args.block_size=8 differ"),
        (["--model.loss=losses.LambdaDCE"], "model.loss=LambdaDCE is not a block loss"),
    ],
)
def test_block_sizes_that_do_not_fit_are_one_line_errors(options, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args = [*tiny_args(tiny_corpus(tmp_path), "models.BlockDenoiser"), *options]
    message = run_failing(["fit", "-c", str(CONFIGS / "bd3lm.yaml"), *args], capsys)
    assert fragment in message
    assert not (tmp_path / "logs").exists()  # nothing started


def test_checkpoint_with_other_vocabulary_is_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus, steps=1)])
    (last,) = tmp_path.glob("logs/lightning_logs/version_*/checkpoints/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    checkpoint[CONFIG_KEY]["vocab_size"] = 50257  # as if trained with the GPT-2 tokenizer
    torch.save(checkpoint, tmp_path / "gpt2.ckpt")
    args = [*tiny_args(corpus, steps=2), f"--ckpt_path={tmp_path / 'gpt2.ckpt'}"]
    message = run_failing(["fit", "-c", str(CONFIGS / "sedd.yaml"), *args], capsys)
    assert "vocab_size" in message and "tokenizer" in message
