"""Generative perplexity of samples under an autoregressive judge (the AR model trained by the toolkit).

gen-PPL = exp(mean_b m_b) with m_b the judge's NLL per token of sample b, its delta-method standard error over
samples and the samples' unigram entropy (evaluation.generative_perplexity; low entropy makes a low gen-PPL
meaningless, so both are always reported), and the sampler's network calls (NFE) and wall time per sample when
known. `lightning judge` (cli/judge.py) is the command over these functions.

A samples file is the output of `lightning sample` (one sample under each `=== sample i ... ===` header; the
footer's NFE is read) or plain text with one sample per non-empty line. Each sample is encoded with the
judge's tokenizer ("<|endoftext|>", as samples print the end-of-text id, is read back as that id);
samples of different token counts are cut to the shortest (the scored `length` is reported). Generated
samples are scored as tokens, with the number of network calls and the wall time of the sampler measured here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from data import END_OF_TEXT
from evaluation.generation import draw_samples
from evaluation.generative_perplexity import GenerativePerplexity, generative_perplexity
from evaluation.restore import TrainedModel

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
    if judge.tokenizer_name != model.tokenizer_name or judge.vocab_size != model.vocab_size:
        raise ValueError(
            f"--judge uses tokenizer {judge.tokenizer_name!r} (vocab_size {judge.vocab_size}), but --ckpt_path "
            f"uses {model.tokenizer_name!r} (vocab_size {model.vocab_size}); use a judge trained with the "
            "model's data.tokenizer"
        )

def judge_tokens(judge: TrainedModel, tokens: torch.Tensor, batch_size: int = 16) -> GenerativePerplexity:
    """The generative perplexity of `tokens` (N, L) long under the AR checkpoint `judge`'s EMA network
    (generative_perplexity, with the judge's vocabulary and context length)."""
    judge.require_kind("autoregressive", "--judge")
    return generative_perplexity(
        judge.network, tokens.to(judge.device), batch_size=batch_size, vocab_size=judge.vocab_size,
        max_length=judge.max_length,
    )

def report(judge: TrainedModel, tokens: torch.Tensor, source: str, nfe: float | None = None,
           seconds_per_sample: float | None = None, sampler: str | None = None, batch_size: int = 16) -> JudgeReport:
    """The JudgeReport of `tokens` (N, L) long scored by `judge` (judge_tokens), with what is known of how they
    were drawn."""
    score = judge_tokens(judge, tokens, batch_size)
    return JudgeReport(
        judge=judge.source, samples=source, num_samples=score.num_samples, length=score.length,
        gen_ppl=score.gen_ppl, gen_ppl_se=score.standard_error, mean_nll_per_token=float(score.nll_per_token.mean()),
        unigram_entropy_nats=score.unigram_entropy, nfe=nfe, seconds_per_sample=seconds_per_sample, sampler=sampler,
    )


def judge_file(judge: TrainedModel, path: str, model: TrainedModel | None = None, batch_size: int = 16) -> JudgeReport:
    """The generative perplexity of the samples in the file at `path` (read_samples) under `judge`; `model`, when
    given, is the model that wrote them, checked to share the judge's tokenizer."""
    judge.require_kind("autoregressive", "--judge")
    texts, nfe = read_samples(path)
    if model is not None:
        check_same_tokenizer(judge, model)
    return report(judge, encode_samples(texts, judge, path), path, nfe=nfe, batch_size=batch_size)


def judge_model(
    judge: TrainedModel, model: TrainedModel, num_samples: int, length: int, seed: int = 0, sampler: str = "euler",
    options: dict[str, object] | None = None, batch_size: int = 16,
) -> JudgeReport:
    """Draw `num_samples` samples of `length` tokens from `model` (evaluation.generation.draw_samples, timed) and
    score them under `judge`."""
    judge.require_kind("autoregressive", "--judge")
    check_same_tokenizer(judge, model)
    model.check_length(length, "--length")
    judge.check_length(length, "--length (the judge's context)")
    drawn = draw_samples(model, num_samples, length, seed, sampler, options)
    return report(judge, drawn.tokens, f"generated from {model.source}", drawn.nfe, drawn.seconds_per_sample,
                  drawn.sampler, batch_size)


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
