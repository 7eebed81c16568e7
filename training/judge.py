"""`lightning evaluate --judge ar.ckpt ...`: generative perplexity of samples under an AR checkpoint.

    lightning evaluate --judge ar.ckpt --samples samples.txt [--json]             (score a samples file)
    lightning evaluate --judge ar.ckpt --ckpt_path model.ckpt [--num_samples 8] [--steps 128]
        [--sampler euler] [--length L] [--seed 0] [--json]                          (generate, then score)

The judge is an autoregressive checkpoint trained by the toolkit (configs/ar.yaml), read with its own
tokenizer. gen-PPL = exp(mean_b m_b) with m_b the judge's NLL per token of sample b, its delta-method standard
error over samples and the samples' unigram entropy (losses.generative_perplexity; low entropy makes a low
gen-PPL meaningless, so both are always reported), and the sampler's network calls (NFE) and wall time per
sample when known.

A samples file is the output of `lightning sample` (one sample under each `=== sample i ... ===` header; the
footer's NFE is read) or plain text with one sample per non-empty line. Each sample is encoded with the
judge's tokenizer ("<|endoftext|>", as samples print the end-of-text id, is read back as that id);
samples of different token counts are cut to the shortest (the scored `length` is reported). In generate
mode the tokens themselves are scored, with the number of network calls and the wall time of the sampler
measured here.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import losses
from training.restore import TrainedModel, load_trained
from training.tokenizers import END_OF_TEXT

SAMPLE_HEADER = re.compile(r"^=== sample \d+: .* ===$", re.M)
SAMPLE_FOOTER = re.compile(r"^=== .*: NFE (\d+(?:\.\d+)?), .* ===$", re.M)  # a per-row cache gives NFE 10.5


@dataclass
class JudgeReport:
    """The result of judge mode, as printed and written to JSON (None: not known for a samples file)."""

    judge: str
    samples: str
    num_samples: int
    length: int
    gen_ppl: float
    gen_ppl_se: float
    mean_nll_per_token: float
    unigram_entropy_nats: float
    nfe: float | None
    seconds_per_sample: float | None
    sampler: str | None
    standard_error: str = "delta method over samples: gen-PPL * sd(m_b) / sqrt(N), m_b the NLL per token of sample b"


def read_samples(path: str) -> tuple[list[str], float | None]:
    """The sample texts of the file at `path` and the NFE its `lightning sample` footer names (None if none)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--samples: {path!r} does not exist; give the output of `lightning sample` or a text file")
    text = file.read_text(encoding="utf-8")
    footer = SAMPLE_FOOTER.search(text)
    nfe = float(footer.group(1)) if footer else None
    if footer:
        text = text[: footer.start()]
    if SAMPLE_HEADER.search(text):
        samples = [piece.strip("\n") for piece in SAMPLE_HEADER.split(text)[1:]]
    else:
        samples = [line for line in text.splitlines() if line.strip()]
    if len(samples) < 2:
        raise ValueError(f"--samples: {path!r} holds {len(samples)} sample(s); a standard error needs at least 2")
    return samples, nfe


def encode_text(text: str, judge: TrainedModel) -> list[int]:
    """Ids of `text` under the judge's tokenizer, with each "<|endoftext|>" (as samples decode it) as eot_id."""
    ids: list[int] = []
    for index, piece in enumerate(text.split(END_OF_TEXT)):
        if index:
            ids.append(judge.tokenizer.eot_id)
        ids.extend(judge.tokenizer.encode(piece))
    return ids


def encode_samples(texts: list[str], judge: TrainedModel, path: str) -> torch.Tensor:
    """(N, L) long: every sample encoded with the judge's tokenizer, cut to the shortest token count."""
    encoded = [encode_text(text, judge) for text in texts]
    longest = max(len(ids) for ids in encoded)
    if judge.max_length is not None and longest > judge.max_length:
        raise ValueError(
            f"--samples: a sample of {path!r} has {longest} tokens, longer than the judge's context "
            f"max_length={judge.max_length}; generate shorter samples or use a judge with a longer context"
        )
    length = min(len(ids) for ids in encoded)
    if length < 1:
        raise ValueError(f"--samples: {path!r} holds an empty sample; remove it")
    return torch.tensor([ids[:length] for ids in encoded], dtype=torch.long)


def check_same_tokenizer(judge: TrainedModel, model: TrainedModel) -> None:
    """Raise ValueError (one line) unless the judge and the model share the tokenizer and the vocabulary."""
    if judge.tokenizer_name != model.tokenizer_name or judge.module.vocab_size != model.module.vocab_size:
        raise ValueError(
            f"--judge uses tokenizer {judge.tokenizer_name!r} (vocab_size {judge.module.vocab_size}), but --ckpt_path "
            f"uses {model.tokenizer_name!r} (vocab_size {model.module.vocab_size}); use a judge trained with the "
            "model's data.tokenizer"
        )


@dataclass
class DrawnSamples:
    """Samples drawn for judging. tokens: (N, L) long in [0, V) (a mask a sampler left reads as end-of-text);
    nfe: network evaluations per sequence (samplers.SamplingResult; AR: L); seconds_per_sample: the sampler's
    wall time / N; sampler: what drew them ("ancestral" or "<name>, <steps> steps")."""

    tokens: torch.Tensor
    nfe: float
    seconds_per_sample: float
    sampler: str


def draw_samples(
    model: TrainedModel,
    num_samples: int,
    length: int,
    seed: int = 0,
    sampler: str = "euler",
    options: dict[str, object] | None = None,
) -> DrawnSamples:
    """`num_samples` samples of `length` tokens from `model`'s EMA weights, timed: ancestral for an AR model,
    else the sampler named `sampler` (training.sample.resolve_sampler) built with `options` (e.g. {"steps": 16}).

    Raises ValueError (one line) for a length the network does not accept, an unknown sampler or option, and
    sampler options given for an AR model.
    """
    from training.sample import build_sampler, generate_samples, resolve_sampler

    model.check_length(length, "--length")
    device = model.module.device
    start = time.perf_counter()
    if model.kind == "autoregressive":
        if options:
            raise ValueError(f"an autoregressive model samples ancestrally; it takes no sampler option {options}")
        result = model.module.generate_result(num_samples, length, torch.Generator(device=device).manual_seed(seed))
        tokens, nfe, label = result.tokens.cpu(), float(result.nfe), "ancestral"
    else:
        built = build_sampler(resolve_sampler(sampler), model.module.process, dict(options or {}), sampler)
        samples = generate_samples(model, built, num_samples, length, seed)
        tokens = samples.tokens.clamp(max=model.tokenizer.vocab_size - 1)  # a mask left reads as end-of-text
        steps = getattr(built, "steps", None)
        nfe, label = float(samples.nfe), f"{sampler}, {'exact' if steps is None else steps} steps"
    return DrawnSamples(tokens, nfe, (time.perf_counter() - start) / num_samples, label)


def judge_tokens(judge: TrainedModel, tokens: torch.Tensor, batch_size: int = 16) -> losses.GenerativePerplexity:
    """The generative perplexity of `tokens` (N, L) long under the AR checkpoint `judge`'s EMA network
    (losses.generative_perplexity, with the judge's vocabulary and context length)."""
    judge.require_kind("autoregressive", "--judge")
    judge.module.ema.eval()
    return losses.generative_perplexity(
        judge.module.ema, tokens.to(judge.module.device), batch_size=batch_size, vocab_size=judge.module.vocab_size,
        max_length=judge.max_length,
    )


def judge_samples(arguments: argparse.Namespace, device: torch.device) -> JudgeReport:
    """Judge mode of `lightning evaluate` on parsed arguments (module docstring)."""
    judge = load_trained(arguments.judge, None, device)
    judge.require_kind("autoregressive", "--judge")
    nfe = seconds = sampler_name = None
    if arguments.samples is not None:
        texts, nfe = read_samples(arguments.samples)
        if arguments.ckpt_path is not None:
            check_same_tokenizer(judge, load_trained(arguments.ckpt_path, arguments.config, device))
        tokens = encode_samples(texts, judge, arguments.samples)
        source = arguments.samples
    else:
        if arguments.ckpt_path is None:
            raise ValueError("--judge needs --samples FILE, or --ckpt_path of a model to generate the samples from")
        model = load_trained(arguments.ckpt_path, arguments.config, device)
        check_same_tokenizer(judge, model)
        length = model.seq_len if arguments.length is None else arguments.length
        model.check_length(length, "--length")
        judge.check_length(length, "--length (the judge's context)")
        options = {} if arguments.steps is None or model.kind == "autoregressive" else {"steps": arguments.steps}
        drawn = draw_samples(model, arguments.num_samples, length, arguments.seed, arguments.sampler, options)
        tokens, nfe, seconds, sampler_name = drawn.tokens, drawn.nfe, drawn.seconds_per_sample, drawn.sampler
        source = f"generated from {arguments.ckpt_path}"
    score = judge_tokens(judge, tokens, arguments.batch_size)
    return JudgeReport(
        judge=arguments.judge, samples=source, num_samples=score.num_samples, length=score.length,
        gen_ppl=score.gen_ppl, gen_ppl_se=score.standard_error, mean_nll_per_token=float(score.nll_per_token.mean()),
        unigram_entropy_nats=score.unigram_entropy, nfe=nfe, seconds_per_sample=seconds, sampler=sampler_name,
    )


def format_judge(report: JudgeReport) -> str:
    """A human-readable report of judge mode."""
    nfe = "unknown" if report.nfe is None else f"{report.nfe:g}"
    wall = "unknown" if report.seconds_per_sample is None else f"{report.seconds_per_sample:.3f} s"
    return "\n".join([
        f"judge: {report.judge}",
        f"samples: {report.samples}: {report.num_samples} x {report.length} tokens"
        + (f" ({report.sampler})" if report.sampler else ""),
        f"gen-PPL: {report.gen_ppl:.3f} +- {report.gen_ppl_se:.3f} (mean NLL {report.mean_nll_per_token:.4f} "
        f"nats/token, {report.mean_nll_per_token / math.log(2.0):.4f} bits)",
        f"unigram entropy of the samples: {report.unigram_entropy_nats:.4f} nats",
        f"NFE: {nfe}; wall time per sample: {wall}",
        f"+- is {report.standard_error}",
    ]) + "\n"
