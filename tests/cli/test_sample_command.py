"""`lightning sample` (training/sample.py), in-process on tiny checkpoints made by a 2-step fit.

References: the prompt's token ids written out by hand (the char tokenizer maps a character to its byte),
the Euler sampler's call count K + 1 (K grid steps and the final denoising step), and the weights: samples
must not change when the raw network weights are replaced, and must change when the EMA weights are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import make_checkpoint

from cli.main import main
from evaluation.generation import sampler_classes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("sedd"))


def sample(checkpoint: Path, *options: str):
    return main(["sample", f"--ckpt_path={checkpoint}", "--device=cpu", *options])


def test_output_has_the_requested_count_and_length(checkpoint, tmp_path):
    output = tmp_path / "samples.txt"
    result = sample(checkpoint, "--num_samples=3", "--length=12", "--steps=4", f"--output={output}")
    assert result.tokens.shape == (3, 12)
    assert result.nfe == 4 + 1  # 4 Euler steps and the denoising step
    text = output.read_text(encoding="utf-8")
    assert text.count("=== sample ") == 3 and "NFE 5" in text and text.count("unigram entropy") == 4
    assert int(result.tokens.max()) < 257  # every mask resolved to a clean byte or end-of-text


@pytest.mark.parametrize("sampler", sorted(sampler_classes()))  # every sampler the package exports
def test_prefix_is_kept_verbatim(checkpoint, sampler, capsys):
    result = sample(checkpoint, f"--sampler={sampler}", "--steps=4", "--num_samples=2", "--prefix=Line 7: ")
    expected = torch.tensor([ord(c) for c in "Line 7: "])  # bytes of the prompt
    assert torch.equal(result.tokens[:, :8], expected.expand(2, 8))
    assert all(text.startswith("Line 7: ") for text in result.texts)
    assert capsys.readouterr().out.count("Line 7: ") == 2  # printed to stdout by default


@pytest.mark.parametrize(
    ("sampler", "option", "calls"),
    [("trapezoidal", "theta=0.4", 2 * 3 + 1), ("rk2", "theta=0.5", 2 * 3 + 1), ("remdm", "strength=0.5", 3 + 1)],
)
def test_second_order_and_remasking_samplers_take_their_options(checkpoint, sampler, option, calls):
    """The samplers of Ren et al. (2025) and Wang et al. (2025) from the command line, with an option each."""
    result = sample(checkpoint, f"--sampler={sampler}", "--steps=3", "--num_samples=2", f"--sampler_option={option}")
    assert result.tokens.shape[0] == 2 and int(result.tokens.max()) < 257  # every mask resolved
    assert result.nfe == calls  # two network calls per theta-step, one per remasking step, plus denoising


def test_infill_template_fixes_the_given_positions(checkpoint):
    result = sample(checkpoint, "--infill=ab[MASK]cd[MASK]ef", "--length=12", "--num_samples=2", "--steps=4")
    # 6 fixed bytes leave 6 positions, shared 3 + 3 by the two gaps: ab___cd___ef
    layout = "ab...cd...ef"
    for position, char in enumerate(layout):
        if char != ".":
            assert (result.tokens[:, position] == ord(char)).all(), position
    suffixed = sample(checkpoint, "--prefix=<", "--suffix=>", "--length=10", "--num_samples=2", "--steps=4")
    assert (suffixed.tokens[:, 0] == ord("<")).all() and (suffixed.tokens[:, -1] == ord(">")).all()


def test_same_seed_same_text_and_other_seed_other_text(checkpoint):
    first = sample(checkpoint, "--seed=3", "--steps=4", "--num_samples=3")
    again = sample(checkpoint, "--seed=3", "--steps=4", "--num_samples=3")
    other = sample(checkpoint, "--seed=4", "--steps=4", "--num_samples=3")
    assert first.texts == again.texts and torch.equal(first.tokens, again.tokens)
    assert not torch.equal(first.tokens, other.tokens)


def test_samples_use_the_ema_weights(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    reference = sample(checkpoint, "--seed=1", "--steps=4").tokens

    def altered(prefix: str) -> Path:
        changed = {**state, "state_dict": dict(state["state_dict"])}
        generator = torch.Generator().manual_seed(0)
        for key, value in changed["state_dict"].items():
            if key.startswith(prefix) and value.is_floating_point():
                changed["state_dict"][key] = value + 0.1 * torch.randn(value.shape, generator=generator)
        path = tmp_path / f"{prefix.strip('.')}.ckpt"
        torch.save(changed, path)
        return path

    assert torch.equal(sample(altered("network."), "--seed=1", "--steps=4").tokens, reference)
    assert not torch.equal(sample(altered("ema."), "--seed=1", "--steps=4").tokens, reference)


def test_radd_denoiser_checkpoint_samples(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "radd", "radd.yaml", "models.RADDDenoiser")
    for sampler in ("euler", "first-hitting"):
        result = sample(checkpoint, f"--sampler={sampler}", "--prefix=Li", "--num_samples=2", "--steps=4")
        assert result.tokens.shape == (2, 16) and (result.tokens[:, :2] == torch.tensor([76, 105])).all()
        assert int(result.tokens.max()) < 257


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--steps=0"], "steps"),
        (["--num_samples=0"], "--num_samples"),
        (["--length=0"], "--length must be a positive integer"),
        (["--length=ten"], "--length"),
        (["--stride=4"], "--stride"),
        (["--sampler=leapfrog"], "--sampler"),
        (["--infill=no gap here"], "[MASK]"),
        (["--infill=a[MASK]", "--prefix=b"], "--infill"),
        (["--prefix=" + "x" * 16], "--length"),
        (["--top_p=2"], "top_p"),
        (["--temperature=0"], "temperature"),
        (["--no_such_option"], "no_such_option"),
        (["--output=/no/such/dir/out.txt"], "/no/such/dir"),
    ],
)
def test_bad_options_are_one_line_errors(checkpoint, options, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample(checkpoint, *options)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sample", f"--ckpt_path={tmp_path / 'none.ckpt'}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "ckpt_path" in lines[0] and "none.ckpt" in lines[0]


def test_d3pm_checkpoint_samples_through_the_chains_posterior(tmp_path):
    """A model trained with configs/d3pm.yaml (x0 logits) samples with every grid sampler, as every model must."""
    checkpoint = make_checkpoint(tmp_path / "d3pm", "d3pm.yaml")
    for sampler in ("euler", "tweedie", "tau-leaping"):
        samples = sample(checkpoint, f"--sampler={sampler}", "--steps=3", "--num_samples=2", "--length=8",
                         f"--output={tmp_path / 'out.txt'}")
        assert samples.tokens.shape == (2, 8) and samples.nfe == 4
