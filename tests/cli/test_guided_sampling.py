"""`lightning sample --label NAME --guidance GAMMA [--classifier PATH]` (cli/sample.py, evaluation/guidance.py).

References: the samples of `--label c --guidance 1` against the sampler run by hand on the network with the label
fixed (same seed: identical tokens); the Euler sampler's call count (K steps + 1 denoising call, doubled by the
2B-row guided call); the footer read back by the judge's reader; every bad option: one line, exit 2, no file.
"""

from __future__ import annotations

import pytest
import torch
from fit_helpers import one_line_error

import samplers
from cli.main import main
from evaluation.judge import read_samples
from evaluation.restore import load_trained

ABSORBING_SAMPLERS = ("euler", "tweedie", "tau-leaping", "first-hitting", "trapezoidal", "rk2", "remdm")


def test_the_conditional_samples_are_the_network_read_at_the_label(genre_sedd_checkpoint):
    result = main(["sample", f"--ckpt_path={genre_sedd_checkpoint}", "--device=cpu", "--steps=3", "--num_samples=3",
                   "--seed=4", "--label=tragedy"])
    trained = load_trained(genre_sedd_checkpoint)

    def network(x, total, where=None):
        label = torch.ones(x.shape[0], dtype=torch.long)  # tragedy
        return trained.network(x, total, where=where, label=label)

    model = samplers.ConcreteScore(network, log=True, positions=True)
    expected = samplers.EulerSampler(trained.process, steps=3).generate(
        model, 3, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(result.tokens, expected.tokens)
    assert result.nfe == 4  # 3 steps + the denoising step, one row per row


def test_the_footer_records_label_and_weight_and_guidance_doubles_the_rows(genre_radd_checkpoint, tmp_path):
    out = tmp_path / "samples.txt"
    result = main(["sample", f"--ckpt_path={genre_radd_checkpoint}", "--device=cpu", "--steps=3", "--num_samples=2",
                   "--label=comedy", "--guidance=2.5", f"--output={out}"])
    footer = out.read_text(encoding="utf-8").splitlines()[-1]
    assert "label comedy, guidance 2.5" in footer
    texts, nfe = read_samples(str(out))
    assert len(texts) == 2 and nfe == result.nfe
    assert result.nfe <= 2 * 4  # two rows per row (the per-row cache of a denoiser may save some)


@pytest.mark.parametrize("sampler", ABSORBING_SAMPLERS)
def test_every_sampler_of_the_absorbing_chain_takes_a_guided_model(sampler, genre_sedd_checkpoint):
    result = main(["sample", f"--ckpt_path={genre_sedd_checkpoint}", "--device=cpu", "--steps=2", "--num_samples=1",
                   f"--sampler={sampler}", "--label=comedy", "--guidance=2"])
    assert result.tokens.shape == (1, 16) and int(result.tokens.max()) < 257  # every position unmasked


def test_predictor_guidance_with_a_classifier_checkpoint(sedd_checkpoint, genre_classifier_checkpoint, tmp_path):
    out = tmp_path / "guided.txt"
    result = main(["sample", f"--ckpt_path={sedd_checkpoint}", "--device=cpu", "--steps=2", "--num_samples=2",
                   f"--classifier={genre_classifier_checkpoint}", "--label=tragedy", "--guidance=2",
                   f"--output={out}"])
    assert result.nfe == 3  # the network's rows only
    assert f"label tragedy, guidance 2, classifier {genre_classifier_checkpoint}" in out.read_text().splitlines()[-1]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--label=farce"], "--label: unknown label 'farce'; --ckpt_path GENRE knows comedy, tragedy"),
        (["--label=comedy", "--guidance=-1"], "--guidance must be a finite number >= 0"),
        (["--label=comedy", "--guidance=nan"], "--guidance must be a finite number >= 0"),
        (["--label=comedy", "--guidance=inf"], "--guidance must be a finite number >= 0"),
        (["--guidance=2"], "--guidance steers the samples towards a class; give the class with --label NAME"),
        (["--classifier=CLASSIFIER"], "--classifier steers the samples towards a class"),
        (["--label=comedy", "--classifier=GENRE"], "--classifier needs a classifier checkpoint, but it holds a "
                                                   "diffusion model"),
        (["--label=farce", "--classifier=CLASSIFIER"], "--label: unknown label 'farce'; --classifier CLASSIFIER knows"),
    ],
)
def test_bad_guidance_options_are_one_line_errors_and_write_nothing(
        options, expected, genre_sedd_checkpoint, genre_classifier_checkpoint, tmp_path, capsys):
    paths = {"GENRE": str(genre_sedd_checkpoint), "CLASSIFIER": str(genre_classifier_checkpoint)}
    for key, value in paths.items():
        options = [option.replace(key, value) for option in options]
        expected = expected.replace(key, value)
    out = tmp_path / "out.txt"
    line = one_line_error(capsys, ["sample", f"--ckpt_path={genre_sedd_checkpoint}", "--device=cpu", f"--output={out}",
                                   *options])
    assert expected in line
    assert not out.exists()


def test_a_label_for_an_unconditional_or_autoregressive_checkpoint_and_a_classifier_to_sample_are_refused(
        sedd_checkpoint, ar_checkpoint, genre_classifier_checkpoint, tmp_path, capsys):
    out = tmp_path / "out.txt"
    common = ["--device=cpu", f"--output={out}"]
    line = one_line_error(capsys, ["sample", f"--ckpt_path={sedd_checkpoint}", *common, "--label=comedy"])
    assert "was trained without labels (an unconditional model)" in line and "--classifier" in line
    line = one_line_error(capsys, ["sample", f"--ckpt_path={ar_checkpoint}", *common, "--label=comedy", "--guidance=2"])
    assert "--label: guided sampling is for diffusion checkpoints" in line
    line = one_line_error(capsys, ["sample", f"--ckpt_path={genre_classifier_checkpoint}", *common])
    assert "--ckpt_path holds a classifier of noisy sequences" in line
    text = tmp_path / "text.txt"
    text.write_text("a merry fool laughs and sings, hey nonny nonny.\n" * 4, encoding="utf-8")
    line = one_line_error(capsys, ["evaluate", f"--ckpt_path={genre_classifier_checkpoint}", f"--text={text}",
                                   *common])
    assert "--ckpt_path holds a classifier of noisy sequences, which has no likelihood" in line
    assert not out.exists()
