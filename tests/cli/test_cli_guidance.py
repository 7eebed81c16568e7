"""What a first run tells the user (issue 13): where things go and are, the subcommands, the smaller CLI
defects, and the one registry of samplers (issue 11, item 6).

References: the files on disk after a run (paths printed by fit are checked to exist, the printed sample
command is run), GPT-2's own tokenisation of the filled-in sentence for the infill pieces, the Euler sampler's
call count (K steps + 1 denoising call, K without it) for an option reaching the constructor, and the samples
of the `--sampler` name against those of its dotted class path (same seed: identical tokens).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
from fit_helpers import CONFIGS, make_checkpoint, tiny_args, tiny_corpus

import samplers
from cli.main import main
from data.tokenizers import GPT2Tokenizer
from evaluation.generation import sampler_classes
from evaluation.prompts import conditioning


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("sedd"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def failing(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return one_line_error(capsys)


def test_default_root_dir_decides_where_everything_goes(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus), "--trainer.default_root_dir=runs/a",
          "--samples.every_n_steps=1", "--samples.length=8"])
    version = tmp_path / "runs/a/lightning_logs/version_0"
    for name in ("metrics.csv", "config.yaml", "samples.txt", "checkpoints/last.ckpt"):
        assert (version / name).is_file(), name
    assert not (tmp_path / "logs").exists()


def test_fit_prints_where_things_are_and_a_sample_command_that_works(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    corpus = tiny_corpus(tmp_path)
    cli = main(["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(corpus), "--samples.every_n_steps=1",
                "--samples.length=8"])
    out = capsys.readouterr().out
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}
    assert "fit finished at step 2" in out
    for key in ("checkpoint", "metrics", "samples"):
        assert Path(lines[key]).is_file(), (key, out)
    bits = cli.model.validation_result["bits_per_token"]
    assert f"bits_per_token {bits:.6g}" in lines["last validation"]
    for key in cli.model.validation_result:  # every entry, whatever the module reports
        assert key in lines["last validation"]
    command = shlex.split(lines["sample from it"])
    assert command[:4] == ["python", "-m", "training", "sample"]
    result = main([*command[3:], "--steps=2", "--num_samples=1", "--device=cpu"])
    assert result.tokens.shape == (1, 16)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "predict", "sample", "evaluate"):
        assert subcommand in out


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_cuda_device_on_a_cpu_build_is_one_line_error(command, checkpoint, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU build of torch, as installed by the README
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = tiny_corpus(tmp_path)
    extra = [f"--text={text}"] if command == "evaluate" else []
    message = failing([command, f"--ckpt_path={checkpoint}", "--device=cuda", *extra], capsys)
    assert "--device cuda" in message and "--device cpu" in message


def test_too_long_prefix_names_the_network_maximum(checkpoint, capsys):
    message = failing(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--prefix=" + "x" * 40], capsys)
    assert "max_length=32" in message and "shorten the prompt" in message
    assert "raise --length to at least 41" not in message  # 41 would be refused by the network


def test_infill_pieces_are_tokenised_as_in_the_filled_sentence():
    """'KING: [MASK] Lear' with the gap filled by ' my' must read 'KING: my Lear' (no double space)."""
    tokenizer = GPT2Tokenizer()
    filled = tokenizer.encode("KING: my Lear")  # GPT-2: "KING", ":", " my", " Lear"
    given, tokens = conditioning("KING: [MASK] Lear", tokenizer, len(filled))
    assert int((~given).sum()) == 1
    tokens[~given] = tokenizer.encode(" my")[0]
    assert tokens.tolist() == filled
    assert tokenizer.decode(tokens.tolist()) == "KING: my Lear"


def test_character_prompt_keeps_its_spaces():
    """A tokenizer with a token per character keeps every piece verbatim (a prefix stays exact)."""
    from data.tokenizers import CharTokenizer

    given, tokens = conditioning("ab [MASK] c", CharTokenizer(), 6)
    assert tokens[given].tolist() == [ord(c) for c in "ab  c"]


# ------------------------------------------------------------------------------------- sampler registry
def test_sampler_choices_are_the_named_exported_classes():
    expected = {"euler", "tau-leaping", "tweedie", "first-hitting"}
    classes = sampler_classes()
    assert expected <= set(classes)
    for name, cls in classes.items():
        assert cls.name == name and cls.__name__ in samplers.__all__


def test_a_new_exported_sampler_is_a_choice_without_edits(checkpoint, monkeypatch):
    class ShortEuler(samplers.EulerSampler):
        name = "short-euler"

    monkeypatch.setattr(samplers, "ShortEuler", ShortEuler, raising=False)
    monkeypatch.setattr(samplers, "__all__", [*samplers.__all__, "ShortEuler"])
    result = main(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--sampler=short-euler", "--steps=3",
                   "--num_samples=1"])
    assert result.nfe == 3 + 1


def test_dotted_class_path_equals_the_named_sampler(checkpoint):
    common = [f"--ckpt_path={checkpoint}", "--device=cpu", "--steps=3", "--num_samples=2", "--seed=5"]
    named = main(["sample", *common, "--sampler=tweedie"])
    dotted = main(["sample", *common, "--sampler=samplers.TweedieSampler"])
    assert torch.equal(named.tokens, dotted.tokens)


def test_sampler_option_reaches_the_constructor(checkpoint):
    result = main(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--steps=3", "--num_samples=1",
                   "--sampler_option", "denoise=False", "--sampler_option", "eps=1e-3"])
    assert result.nfe == 3  # no final denoising call


@pytest.mark.parametrize(
    ("option", "expected"),
    [("colour=1", "colour"), ("eps=1e-3e", "not a Python literal"), ("eps", "KEY=VALUE")],
)
def test_bad_sampler_option_is_one_line_error(option, expected, checkpoint, capsys):
    message = failing(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--sampler=tweedie",
                       f"--sampler_option={option}"], capsys)
    assert expected in message
    if option == "colour=1":
        assert "tweedie" in message and "steps" in message and "temperature" in message  # the accepted keys


def test_unknown_sampler_is_one_line_error(checkpoint, capsys):
    message = failing(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", "--sampler=leapfrog"], capsys)
    assert "leapfrog" in message and "euler" in message
