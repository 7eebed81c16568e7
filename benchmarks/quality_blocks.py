"""The block diffusion part of benchmarks/quality.py: the key/value-cache timing, the block tables and plot.

- Cache timing: each block model writes `length` tokens per sample (first-hitting inside each block: one call per
  token, exact) through the function `lightning sample` calls (evaluation.generation.generate_samples: block by
  block, the context sliding at the trained seq_len), once with the key/value cache and once recomputing the
  context at every call, and the wall times per sample compare. The two modes are the same computation in another
  order: a float64 copy of the network must give identical samples (reported), and in float32 the share of equal
  tokens and the largest log-probability difference at one call say how far round-off moves them.
- Tables: bits/token against the block size beside the AR model and RADD (block size 1 is an AR model, block
  size seq_len RADD's denoiser), the gap to AR at the base budget and at the longer one, gen-PPL of the exact
  block sampler against the AR model's own samples, and the cache timing.
- Plot: bits/token against block size; the gap to AR against training steps; gen-PPL against NFE per block model.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import samplers
from benchmarks import fits
from evaluation.generation import generate_samples
from evaluation.restore import TrainedModel


@dataclass
class CacheTiming:
    """One block model's timing of `length` tokens per sample, with and without the key/value cache.

    seconds_*: wall time per sample (the batch's time / num_samples); nfe: network evaluations per sample
    (the same in both modes; the cache adds one context encoding per block). The two modes compute the same
    conditionals in a different order, so in float32 they agree to round-off (max_log_prob_difference, at one
    call of each on the same context) and a draw can fall on the other side of a boundary that round-off moved:
    token_agreement is the share of tokens equal in the timed float32 samples, same_samples_float64 whether the
    samples of a float64 copy of the network are identical (the exactness of the cache)."""

    model: str
    block_size: int
    length: int
    num_samples: int
    context: int
    inner: str
    seconds_cached: float
    seconds_recomputed: float
    nfe: float
    token_agreement: float
    max_log_prob_difference: float
    same_samples_float64: bool

    @property
    def speedup(self) -> float:
        return self.seconds_recomputed / self.seconds_cached

    def summary(self) -> str:
        return (f"{self.length} tokens: cache {self.seconds_cached:.2f} s/sample, recomputing "
                f"{self.seconds_recomputed:.2f} s/sample ({self.speedup:.2f}x); float32: {self.token_agreement:.4f} "
                f"of the tokens agree, log-probs within {self.max_log_prob_difference:.1e}; float64: same samples "
                f"{self.same_samples_float64}")


def _samples(trained: TrainedModel, num_samples: int, length: int, seed: int) -> tuple[dict[bool, torch.Tensor],
                                                                                      dict[bool, float], float]:
    """The tokens and seconds per sample of `trained` with (True) and without (False) the cache, and the NFE."""
    inner = samplers.FirstHittingSampler(trained.process)
    seconds, tokens, nfe = {}, {}, 0.0
    for cache in (True, False):
        start = time.perf_counter()
        drawn = generate_samples(trained, inner, num_samples, length, seed, cache=cache)
        seconds[cache] = (time.perf_counter() - start) / num_samples
        tokens[cache], nfe = drawn.tokens, drawn.nfe
    return tokens, seconds, nfe


def log_prob_difference(network: Any, tokens: torch.Tensor, context: int) -> float:
    """max |log p| difference between the cached call (encode_context, then denoise_block) and the network on the
    whole window [context, masked block], the clean context the first whole blocks of tokens (B, >= context) that
    leave room for the block in `context` positions."""
    size = network.block_size
    clean = tokens[:, : (context - size) // size * size]
    block = torch.full((clean.shape[0], size), network.vocab_size, dtype=torch.long, device=clean.device)
    with torch.no_grad():  # no room for a context (block_size = seq_len): the cached call reads no cache
        cached = network.denoise_block(block, network.encode_context(clean) if clean.shape[1] else None)
        window = network(torch.cat([clean, block], dim=1))[:, -size:]
    return float((cached - window).abs().max())


def cache_timing(name: str, trained: TrainedModel, length: int, num_samples: int, seed: int) -> CacheTiming:
    """Time `num_samples` samples of `length` tokens of the block model `trained` with and without the cache, and
    check the two modes against each other (CacheTiming)."""
    tokens, seconds, nfe = _samples(trained, num_samples, length, seed)
    exact = replace(trained, network=copy.deepcopy(trained.network).double())
    tokens64, _, _ = _samples(exact, num_samples, length, seed)
    return CacheTiming(name, trained.block_size, length, num_samples, trained.seq_len, "first-hitting (exact)",
                       seconds[True], seconds[False], nfe, float((tokens[True] == tokens[False]).double().mean()),
                       log_prob_difference(trained.network, tokens[True], trained.seq_len),
                       bool(torch.equal(tokens64[True], tokens64[False])))


# ------------------------------------------------------------------------------------------------- output
def _pm(value: float | None, se: float | None, digits: int = 3) -> str:
    if value is None:
        return "1 (reference)"
    return f"{value:.{digits}f} +- {se:.{digits}f}"


def block_markdown(report: Any) -> str:
    """The block diffusion tables of the report (module docstring) as Markdown; "" without block models."""
    settings, validation = report.settings, report.validation
    block_models = settings.get("block_models", [])
    lines = []
    if block_models:
        lines += ["", "Block diffusion (configs/bd3lm.yaml at each block size S; block size 1 is an AR model, "
                  f"block size {settings['seq_len']} the RADD denoiser) on the same blocks, beside the AR model and "
                  "RADD:", "",
                  "| model | block size | bits/token | gap to AR (ppl ratio) | perplexity |", "|---|---|---|---|---|"]
        for name in ["ar", *[m for m in ("radd",) if m in validation], *block_models]:
            result = validation[name]
            size = name.removeprefix("bd3lm-") if name in block_models else ""
            lines.append(f"| {name} | {size} | {_pm(result.bits_per_token, result.bits_per_token_se)} | "
                         f"{_pm(result.gap_ppl_ratio, result.gap_ppl_ratio_se)} | {result.perplexity:.1f} |")
    longer = settings.get("longer_models", [])
    if longer:
        factor = settings["longer"]
        lines += ["", f"The gap to AR with training: each model at the base budget and at {factor}x the steps (the gap "
                  f"to the AR model of the same budget; paired SE):", "",
                  "| model | steps | bits/token | gap to AR | steps | bits/token | gap to AR |",
                  "|---|---|---|---|---|---|---|"]
        for name in longer:
            base, long = validation[name], validation[f"{name}-x{factor}"]
            lines.append(f"| {name} | {report.training[name].steps} | "
                         f"{_pm(base.bits_per_token, base.bits_per_token_se)} | "
                         f"{_pm(base.gap_ppl_ratio, base.gap_ppl_ratio_se)} | "
                         f"{report.training[f'{name}-x{factor}'].steps} | "
                         f"{_pm(long.bits_per_token, long.bits_per_token_se)} | "
                         f"{_pm(long.gap_ppl_ratio, long.gap_ppl_ratio_se)} |")
    own = next((row for row in report.references if row.model == "ar" and row.sampler.startswith("ancestral")), None)
    exact = [row for row in report.samples if row.model in block_models and row.sampler == "first-hitting"
             and row.steps is None]
    if exact and own is not None:
        lines += ["", f"Gen-PPL of the exact block sampler (first-hitting inside each block, NFE = L = "
                  f"{settings['length']}) against the AR model's own ancestral samples ({own.gen_ppl:.1f} +- "
                  f"{own.gen_ppl_se:.1f}), same length, judge: the AR model:", "",
                  "| model | gen-PPL | ratio to AR's own samples | unigram entropy |", "|---|---|---|---|"]
        for row in exact:
            ratio = row.gen_ppl / own.gen_ppl
            ratio_se = ratio * math.hypot(row.gen_ppl_se / row.gen_ppl, own.gen_ppl_se / own.gen_ppl)
            lines.append(f"| {row.model} | {row.gen_ppl:.1f} +- {row.gen_ppl_se:.1f} | {ratio:.2f} +- {ratio_se:.2f} | "
                         f"{row.unigram_entropy_nats:.3f} |")
    if report.cache:
        first = report.cache[0]
        lines += ["", f"Key/value cache: {first.num_samples} samples of {first.length} tokens per block model, "
                  f"{first.inner} inside each block, the context sliding at {first.context} positions (as `lightning "
                  "sample` runs them); seconds per sample (one sample = "
                  f"{first.length} generated tokens), with the cache and recomputing the context at every call:", "",
                  "| model | block size | NFE | cache (s) | recomputed (s) | speed-up | float32: tokens equal | "
                  "float32: max log-prob difference | float64: same samples |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in report.cache:
            lines.append(f"| {row.model} | {row.block_size} | {row.nfe:.0f} | {row.seconds_cached:.3f} | "
                         f"{row.seconds_recomputed:.3f} | {row.speedup:.2f}x | {row.token_agreement:.4f} | "
                         f"{row.max_log_prob_difference:.1e} | {row.same_samples_float64} |")
    return "\n".join(lines) + ("\n" if lines else "")


def block_plot(report: Any, path: Path) -> str | None:
    """bits/token against block size, the gap to AR against steps, gen-PPL against NFE per block model; None
    without block models or matplotlib (benchmarks/quality.py says so once)."""
    block_models = report.settings.get("block_models", [])
    plt = fits.pyplot(note=False)
    if plt is None or not block_models:
        return None
    validation = report.validation
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    sizes = [int(name.removeprefix("bd3lm-")) for name in block_models]
    axes[0].errorbar(sizes, [validation[name].bits_per_token for name in block_models],
                     yerr=[validation[name].bits_per_token_se for name in block_models], marker="o", capsize=3,
                     label="block diffusion (bound)")
    for name, style in (("ar", "-"), ("radd", "--")):
        if name in validation:
            result = validation[name]
            axes[0].axhline(result.bits_per_token, color="k", linestyle=style, label=f"{name}")
            axes[0].axhspan(result.bits_per_token - result.bits_per_token_se,
                            result.bits_per_token + result.bits_per_token_se, color="k", alpha=0.08)
    axes[0].set(xscale="log", xlabel="block size S", ylabel="val bits/token", title="likelihood against block size")
    axes[0].set_xticks(sizes, [str(size) for size in sizes])
    axes[0].legend(fontsize=8)
    factor = report.settings.get("longer")
    for name in report.settings.get("longer_models", []):
        if name == "ar":
            continue
        points = [(report.training[key].steps, validation[key]) for key in (name, f"{name}-x{factor}")]
        axes[1].errorbar([steps for steps, _ in points], [result.gap_ppl_ratio for _, result in points],
                         yerr=[result.gap_ppl_ratio_se for _, result in points], marker="o", capsize=3, label=name)
    axes[1].axhline(1.0, color="k", linestyle=":")
    axes[1].set(xscale="log", xlabel="training steps", ylabel="perplexity ratio to AR (same steps)",
                title="the gap to AR with training")
    if report.settings.get("longer_models"):
        axes[1].legend(fontsize=8)
    for name in block_models:
        for sampler, marker in (("first-hitting", "o"), ("euler", "s")):
            rows = [row for row in report.samples if row.model == name and row.sampler == sampler]
            if rows:
                axes[2].errorbar([row.nfe for row in rows], [row.gen_ppl for row in rows],
                                 yerr=[row.gen_ppl_se for row in rows], marker=marker, capsize=2,
                                 label=f"{name} {sampler}")
    own = next((row for row in report.references if row.model == "ar" and row.sampler.startswith("ancestral")), None)
    if own is not None:
        axes[2].axhline(own.gen_ppl, color="k", linestyle=":", label="AR's own samples")
    axes[2].set(xscale="log", yscale="log", xlabel="NFE (measured)", ylabel="gen-PPL (judge: AR)",
                title="block samples against NFE")
    axes[2].legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)
