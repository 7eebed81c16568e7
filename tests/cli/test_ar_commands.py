"""`lightning validate / sample / evaluate` on autoregressive checkpoints, `evaluate --order` on RADD and SEDD
checkpoints and `evaluate --judge`, in-process on tiny checkpoints made by 2-step fits.

References: the module's own exact NLL on the same blocks (evaluate on an AR checkpoint), a direct call of
losses.any_order_log_likelihood with the checkpoint's denoiser (--order left-to-right), a direct call of
losses.generative_perplexity with the judge (--judge), and the prompt's ids by hand (char tokenizer).
"""

from __future__ import annotations

import json
import math

import torch
from fit_helpers import CONFIGS, TEXT, one_line_error, tiny_args, tiny_corpus

import evaluation
import losses
from cli.main import main
from evaluation.restore import load_trained


def test_validate_reads_an_ar_checkpoint(ar_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["validate", "-c", str(CONFIGS / "ar.yaml"), *tiny_args(tiny_corpus(tmp_path), "models.ARTransformer"),
                f"--ckpt_path={ar_checkpoint}"])
    result = cli.model.validation_result
    assert result["tokens"] == 2 * 4 * 16 and 0 < result["bits_per_token"] < 20


def test_wrong_kind_checkpoint_is_a_one_line_error(ar_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, ["fit", "-c", str(CONFIGS / "sedd.yaml"), *tiny_args(tiny_corpus(tmp_path)),
                                   f"--ckpt_path={ar_checkpoint}"])
    assert "holds an autoregressive model, but the config builds a diffusion model" in line


def test_sample_ar_keeps_the_prefix_and_counts_calls(ar_checkpoint, capsys):
    result = main(["sample", f"--ckpt_path={ar_checkpoint}", "--device=cpu", "--num_samples=3", "--length=12",
                   "--prefix=Line", "--temperature=0.8", "--top_k=5", "--top_p=0.9"])
    assert result.tokens.shape == (3, 12) and result.nfe == 12 - 4
    assert torch.equal(result.tokens[:, :4], torch.tensor([list(b"Line")] * 3))  # char ids are the bytes
    assert all(text.startswith("Line") for text in result.texts)
    greedy = [main(["sample", f"--ckpt_path={ar_checkpoint}", "--device=cpu", "--num_samples=2", "--length=6",
                    "--greedy", f"--seed={seed}"]).tokens for seed in (0, 1)]
    assert torch.equal(greedy[0], greedy[1]) and torch.equal(greedy[0][0], greedy[0][1])  # argmax: no randomness
    capsys.readouterr()
    for option in ("--steps=4", "--infill=a [MASK] b", "--sampler=euler"):
        line = one_line_error(capsys, ["sample", f"--ckpt_path={ar_checkpoint}", "--device=cpu", option])
        assert "diffusion option" in line


def test_evaluate_ar_is_the_exact_nll(ar_checkpoint, text_file):
    result = main(["evaluate", f"--ckpt_path={ar_checkpoint}", f"--text={text_file}", "--device=cpu"])
    trained = load_trained(ar_checkpoint)
    blocks = torch.tensor([*TEXT[: 6 * 16 - 1].encode(), 256]).view(6, 16)
    with torch.no_grad():
        nats = float(trained.network.nll(blocks).double().sum())
    assert result.kind == "autoregressive" and result.prior_nats_per_token == 0.0
    assert math.isclose(result.nats_per_token, nats / 96, rel_tol=1e-6)


def test_evaluate_order_left_to_right_on_radd_matches_the_direct_computation(radd_checkpoint, text_file):
    result = main(["evaluate", f"--ckpt_path={radd_checkpoint}", f"--text={text_file}", "--device=cpu",
                   "--order=left-to-right", "--time_samples=2"])
    trained = load_trained(radd_checkpoint)
    blocks = torch.tensor([*TEXT[: 6 * 16 - 1].encode(), 256]).view(6, 16)
    log_p = losses.any_order_log_likelihood(lambda x: trained.network(x, None), blocks, vocab_size=257)
    assert math.isclose(result.order_nats_per_token, -float(log_p.sum()) / 96, rel_tol=1e-6)
    assert result.orders == 1 and result.order_nats_per_token_se is None and result.score_total is None
    eps = 1e-3  # the bound includes the prior term eps log V per token (LogLinear, absorbing chain)
    assert math.isclose(result.prior_nats_per_token, eps * math.log(257), rel_tol=1e-6)


def test_evaluate_random_orders_report_a_standard_error(sedd_checkpoint, text_file, capsys):
    result = main(["evaluate", f"--ckpt_path={sedd_checkpoint}", f"--text={text_file}", "--device=cpu",
                   "--order=random", "--orders=3", "--time_samples=2", "--score_total=0.5", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["orders"] == 3 and printed["score_total"] == 0.5
    assert result.order_nats_per_token_se is not None and result.order_nats_per_token_se > 0
    assert math.isfinite(result.order_nats_per_token) and result.order_nats_per_token > 0


def test_evaluate_order_errors(ar_checkpoint, sedd_checkpoint, text_file, capsys):
    line = one_line_error(capsys, ["evaluate", f"--ckpt_path={ar_checkpoint}", f"--text={text_file}", "--order=random"])
    assert "--order needs a diffusion checkpoint" in line
    line = one_line_error(capsys, ["evaluate", f"--ckpt_path={sedd_checkpoint}", f"--text={text_file}", "--orders=3"])
    assert "--order random" in line
    line = one_line_error(capsys, ["evaluate", f"--ckpt_path={sedd_checkpoint}", f"--text={text_file}",
                          "--order=backwards"])
    assert "invalid choice" in line


def test_judge_scores_a_samples_file(ar_checkpoint, sedd_checkpoint, tmp_path, capsys):
    samples = tmp_path / "samples.txt"
    main(["sample", f"--ckpt_path={sedd_checkpoint}", "--device=cpu", "--num_samples=3", "--steps=4",
          f"--output={samples}"])
    report = main(["evaluate", f"--judge={ar_checkpoint}", f"--samples={samples}", "--device=cpu", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["nfe"] == 5 and printed["num_samples"] == 3  # Euler: 4 steps and the final denoising call
    texts = samples.read_text(encoding="utf-8").split("===")
    judge = load_trained(ar_checkpoint)
    pieces = [texts[2 * i + 2].strip("\n").split("<|endoftext|>") for i in range(3)]
    tokens = [[byte for piece in row for byte in [*piece.encode(), 256]][:-1] for row in pieces]  # eot: id 256
    length = min(len(row) for row in tokens)
    expected = evaluation.generative_perplexity(judge.network, torch.tensor([row[:length] for row in tokens]))
    assert report.length == length and math.isclose(report.gen_ppl, expected.gen_ppl, rel_tol=1e-6)
    assert math.isclose(report.unigram_entropy_nats, expected.unigram_entropy, rel_tol=1e-9)


def test_judge_generates_and_times_samples(ar_checkpoint, radd_checkpoint):
    report = main(["evaluate", f"--judge={ar_checkpoint}", f"--ckpt_path={radd_checkpoint}", "--device=cpu",
                   "--num_samples=2", "--steps=3", "--length=8"])
    assert report.num_samples == 2 and report.length == 8 and report.nfe is not None and report.nfe >= 1
    assert report.seconds_per_sample > 0 and math.isfinite(report.gen_ppl) and report.gen_ppl_se >= 0


def test_judge_errors(ar_checkpoint, sedd_checkpoint, tmp_path, capsys):
    samples = tmp_path / "samples.txt"
    samples.write_text("a short line\n" + "x" * 40 + "\n", encoding="utf-8")  # 40 chars > max_length 32
    line = one_line_error(capsys, ["evaluate", f"--judge={ar_checkpoint}", f"--samples={samples}", "--device=cpu"])
    assert "longer than the judge's context" in line
    line = one_line_error(capsys, ["evaluate", f"--judge={sedd_checkpoint}", f"--samples={samples}", "--device=cpu"])
    assert "--judge needs an autoregressive checkpoint, but it holds a diffusion model" in line
    line = one_line_error(capsys, ["evaluate", f"--samples={samples}", f"--ckpt_path={ar_checkpoint}"])
    assert "--samples needs --judge" in line


def test_judge_with_another_tokenizer_is_a_one_line_error(ar_checkpoint, sedd_checkpoint, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(CONFIGS / "ar.yaml"), *tiny_args(tiny_corpus(tmp_path), "models.ARTransformer"),
          "--data.tokenizer=gpt2", "--model.network.hidden_size=8", "--model.network.num_heads=1"])
    (gpt2_judge,) = tmp_path.glob("logs/lightning_logs/version_*/checkpoints/last.ckpt")
    line = one_line_error(capsys, ["evaluate", f"--judge={gpt2_judge}", f"--ckpt_path={sedd_checkpoint}",
                          "--device=cpu", "--num_samples=2", "--steps=2"])
    assert "tokenizer 'gpt2'" in line and "'char'" in line
