"""`lightning evaluate` (training/evaluate.py), in-process on a tiny checkpoint made by a 2-step fit.

References: scipy.stats.sem for the standard error of equal-length sequences, the jackknife variance of the
ratio estimator for unequal lengths (it agrees with the delta method to O(1/N)), and Lightning's own test
loop (torchmetrics sums over batches) on the same blocks, times and weights for the estimate itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from fit_helpers import CONFIGS, TEXT, make_checkpoint, tiny_args

from cli.main import main
from evaluation.bounds import ratio_estimate


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("sedd"))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """One document of 40 x 16 - 1 bytes: with the end-of-text id, exactly 40 sequences of 16 tokens."""
    path = tmp_path_factory.mktemp("text") / "eval.txt"
    path.write_text(TEXT[: 40 * 16 - 1], encoding="utf-8")
    return path


def evaluate(checkpoint, text, *options):
    return main(["evaluate", f"--ckpt_path={checkpoint}", f"--text={text}", "--device=cpu", *options])


def test_result_is_finite_and_units_agree(checkpoint, text_file, capsys):
    result = evaluate(checkpoint, text_file, "--time_samples=4")
    assert (result.tokens, result.sequences, result.seq_len) == (640, 40, 16)
    values = [result.nats_per_token, result.nats_per_token_se, result.perplexity_bound, result.unigram_entropy_nats]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert math.isclose(result.bits_per_token, result.nats_per_token / math.log(2), rel_tol=1e-12)
    assert math.isclose(result.bits_per_token_se, result.nats_per_token_se / math.log(2), rel_tol=1e-12)
    assert math.isclose(result.perplexity_bound, math.exp(result.nats_per_token), rel_tol=1e-12)
    assert math.isclose(result.perplexity_bound_se, result.perplexity_bound * result.nats_per_token_se, rel_tol=1e-12)
    # the text's unigram entropy, by hand from its byte counts (and the end-of-text id once)
    counts = np.array([TEXT[: 40 * 16 - 1].count(chr(c)) for c in range(256) if chr(c) in TEXT[: 40 * 16 - 1]] + [1])
    frequencies = counts / counts.sum()
    assert math.isclose(result.unigram_entropy_nats, -(frequencies * np.log(frequencies)).sum(), rel_tol=1e-12)
    printed = capsys.readouterr().out
    assert "bits/token" in printed and "delta method" in printed and "+-" in printed


def test_more_time_samples_lower_the_standard_error(checkpoint, text_file):
    # measured on this checkpoint (unigram-initialised output, masked-count estimator): SE 0.031 and 0.019
    # nats/token at K = 1 and 64 (the old time estimator: 0.38 and 0.12); slower than 1/sqrt(K): the spread
    # between sequences does not shrink with K
    se = {k: evaluate(checkpoint, text_file, f"--time_samples={k}") for k in (1, 16, 64)}
    assert se[64].nats_per_token_se < se[16].nats_per_token_se < se[1].nats_per_token_se
    assert se[64].nats_per_token_se < 0.8 * se[1].nats_per_token_se
    # all estimate the same bound: they agree within the combined error (3 standard errors)
    for k in (1, 16):
        combined = math.hypot(se[k].nats_per_token_se, se[64].nats_per_token_se)
        assert abs(se[k].nats_per_token - se[64].nats_per_token) < 3 * combined


def test_estimate_matches_lightning_test_loop(checkpoint, text_file, monkeypatch, tmp_path):
    # The `test` subcommand on the same blocks (data.test_path), with K = model.val_time_samples and the same
    # seed, sums nats and tokens through torchmetrics; the estimate is the same up to float32 rounding of
    # the network (rel 1e-6).
    monkeypatch.chdir(tmp_path)
    ours = evaluate(checkpoint, text_file, "--time_samples=3", "--seed=0", "--batch_size=5")
    cli = main(["test", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(text_file), f"--ckpt_path={checkpoint}",
                f"--data.test_path={text_file}", "--model.val_time_samples=3", "--model.seed=0",
                "--trainer.limit_test_batches=1.0"])
    lightning = cli.model.validation_result
    assert lightning["tokens"] == 640
    assert math.isclose(ours.nats_per_token, lightning["nats"] / lightning["tokens"], rel_tol=1e-6)
    assert math.isclose(ours.bits_per_token, lightning["bits_per_token"], rel_tol=1e-6)


def test_json_output_and_a_shorter_last_sequence(checkpoint, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(TEXT[: 3 * 16 + 4], encoding="utf-8")  # 53 tokens: 3 x 16 and a last sequence of 5
    output = tmp_path / "result.json"
    evaluate(checkpoint, path, "--time_samples=2", "--json", f"--output={output}")
    stored = json.loads(output.read_text(encoding="utf-8"))
    assert stored["tokens"] == 53 and stored["sequences"] == 4
    assert math.isclose(stored["bits_per_token"], stored["nats_per_token"] / math.log(2), rel_tol=1e-12)
    assert "delta method" in stored["standard_error"]


def test_ratio_standard_error_matches_scipy_for_equal_lengths():
    values = torch.tensor([3.0, 5.5, 4.25, 7.0, 2.5], dtype=torch.float64) * 16
    estimate = ratio_estimate(values, torch.full((5,), 16.0))
    assert math.isclose(estimate.value, float(values.mean()) / 16, rel_tol=1e-14)
    assert math.isclose(estimate.standard_error, scipy.stats.sem(values.numpy()) / 16, rel_tol=1e-12)
    assert ratio_estimate(values[:1], torch.tensor([16.0])).standard_error is None


def test_ratio_standard_error_matches_the_jackknife_for_unequal_lengths():
    # The jackknife variance of a ratio of sums equals the delta-method variance to O(1/N); at N = 4000 the
    # two agree to well under 1% (measured 0.02%; tolerance 1%).
    generator = np.random.default_rng(0)
    lengths = generator.integers(1, 65, size=4000).astype(np.float64)
    values = lengths * generator.gamma(4.0, 1.0, size=4000) + generator.normal(0, 5, size=4000)
    estimate = ratio_estimate(torch.from_numpy(values), torch.from_numpy(lengths))
    leave_one_out = (values.sum() - values) / (lengths.sum() - lengths)
    n = values.size
    jackknife = math.sqrt((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
    assert math.isclose(estimate.value, values.sum() / lengths.sum(), rel_tol=1e-12)
    assert math.isclose(estimate.standard_error, jackknife, rel_tol=1e-2)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--text=/no/such/file.txt"], "/no/such/file.txt"),
        (["--time_samples=0"], "--time_samples"),
        (["--seq_len=64"], "max_length=32"),
        (["--batch_size=0"], "--batch_size"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_input_is_one_line_error(checkpoint, text_file, options, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", f"--ckpt_path={checkpoint}", f"--text={text_file}", *options])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines


def test_empty_text_and_missing_checkpoint_are_one_line_errors(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    for args in ([f"--ckpt_path={checkpoint}", f"--text={empty}"],
                 [f"--ckpt_path={tmp_path / 'none.ckpt'}", f"--text={empty}"]):
        with pytest.raises(SystemExit):
            main(["evaluate", *args])
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), lines


def test_block_model_bound_matches_lightning_test_loop_and_scores_whole_blocks(block_checkpoint, text_file,
                                                                               monkeypatch, tmp_path, capsys):
    """The block bound with its SE, the same numbers as Lightning's test loop (the one training path); a last
    sequence is cut to whole blocks (53 tokens: 3 x 16 and 4, one byte unscored)."""
    monkeypatch.chdir(tmp_path)
    ours = evaluate(block_checkpoint, text_file, "--time_samples=3", "--seed=0", "--batch_size=5")
    assert ours.bits_per_token_se is not None and ours.bits_per_token_se > 0 and ours.unscored_tokens == 0
    cli = main(["test", "-c", str(CONFIGS / "bd3lm.yaml"), *tiny_args(text_file, "models.BlockDenoiser"),
                f"--ckpt_path={block_checkpoint}", f"--data.test_path={text_file}", "--model.val_time_samples=3",
                "--model.seed=0", "--trainer.limit_test_batches=1.0"])
    lightning = cli.model.validation_result
    assert lightning["tokens"] == 640
    assert math.isclose(ours.bits_per_token, lightning["bits_per_token"], rel_tol=1e-6)
    path = tmp_path / "short.txt"
    path.write_text(TEXT[: 3 * 16 + 4], encoding="utf-8")  # 53 tokens with the end-of-text id
    short = evaluate(block_checkpoint, path, "--time_samples=2")
    assert (short.tokens, short.unscored_tokens, short.sequences) == (52, 1, 4)
    assert "the last 1, less than a block, not scored" in capsys.readouterr().out
    for options, fragment in ((["--seq_len=10"], "--seq_len 10 is not a multiple of the model's block_size=4"),
                              (["--order=left-to-right"], "block diffusion model")):
        with pytest.raises(SystemExit):
            evaluate(block_checkpoint, text_file, *options)
        line = capsys.readouterr().err.strip()
        assert "\n" not in line and fragment in line
