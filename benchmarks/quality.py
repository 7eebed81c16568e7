"""Diffusion against autoregression on one corpus: likelihood and sample quality per network call.

Run (from the repository root; docs/results.md gives the measured tables and the commands behind them):

    python -m benchmarks.quality                                  # every config as committed (600 steps), and 4x
    python -m benchmarks.quality --steps 150 --val_blocks 128 --order_blocks 32 --num_samples 4 --nfe 8 32 --threads 1
    python -m benchmarks.quality --ckpt ar=PATH --ckpt sedd=PATH ...  # reuse checkpoints, train the rest
    python -m benchmarks.quality --reuse                          # reuse the checkpoints of an earlier run here
    python -m benchmarks.quality --models ar sedd radd --longer 1   # some models, no longer budget

1. Training. The AR yardstick (configs/ar.yaml), SEDD on the absorbing chain (configs/sedd.yaml), RADD
   (configs/radd.yaml), SEDD on the uniform chain (configs/sedd-uniform.yaml) and block diffusion
   (configs/bd3lm.yaml at block sizes 1, 2, 4, 8 and 32: `bd3lm-S`, the block size set on the network and the
   loss) are fitted one after the other (`--models`), each as `python -m training fit -c CONFIG
   --trainer.default_root_dir=<work_dir>/runs/NAME` in a subprocess, with the same corpus, tokenizer, seq_len,
   batch size and number of steps (the configs agree; `--steps`, `--seq_len`, `--batch_size` override all alike),
   so that every model sees the same training tokens. Then the `--longer_models` (AR, SEDD, RADD, block size 4)
   again with `--longer` (4) times the steps (`NAME-x4`), to show whether each gap to AR shrinks or grows with
   training. In-training validation and sample logging are switched off (`--trainer.limit_val_batches=0
   --samples.every_n_steps=0`; neither changes the weights): the recorded wall time is the fit's (start-up,
   optimisation, checkpoints), and validation and sampling are timed below, once per model.
2. Validation, on the same blocks for every model: the first `--val_blocks` validation blocks of the data
   split the checkpoints were trained on (evaluation.training_data.validation_blocks; 512 = the 64 x 8 blocks
   that the configs validate on). Per sequence, evaluation.likelihood.sequence_nats: the AR model's exact
   -log p(x); for a diffusion model the negative-ELBO estimate with its `val_time_samples` draws plus the t = 1
   prior term (an upper bound on -log p(x); for block diffusion the block bound, losses.BlockDiffusionLoss).
   bits/token = sum n_i / sum L_i / ln 2 with the ratio-estimator SE (evaluation.bounds.ratio_estimate). The gap
   to AR is the perplexity ratio exp(R_model - R_AR) against the AR model of the same budget, its SE from the
   paired per-sequence differences (same blocks, so the spread between blocks cancels). RADD: also the exact
   fixed-order likelihood (losses.any_order_log_likelihood through evaluation.likelihood.fixed_order_nats) over
   `--orders` random orders on the first `--order_blocks` blocks, beside the bound on those same blocks.
3. Samples. For every diffusion model of the base budget, sampler (below) and NFE budget in `--nfe`,
   evaluation.generation.draw_samples draws `--num_samples` sequences of seq_len tokens (a block model block by
   block, the sampler inside each block) and evaluation.judge.judge_tokens
   scores them under the AR model (the judge): gen-PPL with its delta-method SE over samples, the unigram
   entropy of the samples, the measured NFE (row-evaluations / batch: RADD's per-row cache can make it less
   than the budget) and the wall time per sample. References: the AR model's own ancestral samples (NFE = L;
   their gen-PPL under themselves is not a fair score, it is the floor of the judge's view) and the validation
   blocks themselves (gen-PPL of real text, with its entropy).
   Samplers and steps for a budget N (docs/samplers.md): Euler (SEDD's predictor), Tweedie (exact transition
   over each step) and tau-leaping (Campbell et al. 2022) take N - 1 steps (the final denoising step is one
   call); theta-trapezoidal (Ren et al. 2025, second order, 2 calls a step) takes (N - 1) // 2 steps;
   first-hitting (absorbing only; Zheng et al. 2024) reveals ceil(m / N) positions per call for N < L and is
   exact with one token per call (NFE = L) for N >= L (budgets above L give the same sampler and are
   skipped). A block model of L / S blocks gives each block n = N S / L calls, with the steps of budget n at
   length S (budgets the blocks cannot share evenly are left out). Left out: RK-2 (first order and worse than
   Euler in this reading, docs/samplers.md) and ReMDM (remasking spends calls beyond NFE = L; with an exact model
   it does not help at any NFE).
4. Key/value cache (benchmarks/quality_blocks.py): each block model writes `--cache_length` (256) tokens per
   sample as `lightning sample` does (first-hitting inside each block, the context sliding at seq_len), with the
   cache and recomputing the context at every call, and the seconds per sample compare. The two are the same
   computation in another order: a float64 copy of the network gives identical samples (reported), and in
   float32 the share of equal tokens and the largest log-probability difference show the round-off.
5. Output: JSON (`--out`, default benchmarks/results/quality.json), the tables printed and written as Markdown
   to <work_dir>/results.md (copy them into docs/results.md), the decoded samples under <work_dir>/samples/,
   and plots (matplotlib, the `dev` extra: without it the script says so and writes no plot):
   <work_dir>/quality.png (val bits/token per model, gen-PPL and entropy against NFE per sampler, the
   whole-sequence models) and <work_dir>/quality_blocks.png (bits/token against block size, the gap to AR
   against steps, block samples' gen-PPL against NFE).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

import models
import samplers
from benchmarks import fits
from benchmarks.fits import ROOT, Training
from benchmarks.quality_blocks import CacheTiming, block_markdown, block_plot, cache_timing
from data import unigram_log_probs
from evaluation.bounds import ratio_estimate
from evaluation.generation import Samples, draw_samples, format_samples
from evaluation.judge import check_same_tokenizer, judge_tokens
from evaluation.likelihood import fixed_order_nats, sequence_nats, total_prior_nats
from evaluation.restore import TrainedModel, load_trained
from evaluation.training_data import training_data, validation_blocks

BLOCK_SIZES = (1, 2, 4, 8, 32)  # the block diffusion rows: configs/bd3lm.yaml at these block sizes
CONFIGS = {  # model name -> config as committed; the first is the judge
    "ar": "configs/ar.yaml",
    "sedd": "configs/sedd.yaml",
    "radd": "configs/radd.yaml",
    "sedd-uniform": "configs/sedd-uniform.yaml",
    **{f"bd3lm-{size}": "configs/bd3lm.yaml" for size in BLOCK_SIZES},
}
JUDGE = "ar"
LONGER_MODELS = ("ar", "sedd", "radd", "bd3lm-4")  # refitted with --longer times the steps
SAMPLERS_ANY_CHAIN = ("euler", "tweedie", "tau-leaping", "trapezoidal")
SAMPLERS_ABSORBING = (*SAMPLERS_ANY_CHAIN, "first-hitting")
DATA_KEYS = ("paths", "tokenizer", "seq_len", "val_fraction", "seed")  # what fixes the validation blocks
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Run:
    """One fit of the report: `model` (a key of CONFIGS) trained for `factor` times the base steps; `name` is the
    model's name for factor 1, else "<model>-x<factor>" (the longer budget)."""

    model: str
    factor: int = 1

    @property
    def name(self) -> str:
        return self.model if self.factor == 1 else f"{self.model}-x{self.factor}"

    @property
    def config(self) -> str:
        return CONFIGS[self.model]

    @property
    def block_size(self) -> int | None:
        """The block size of a bd3lm-S model (the override of configs/bd3lm.yaml), None for the others."""
        return int(self.model.removeprefix("bd3lm-")) if self.model.startswith("bd3lm-") else None

    @property
    def judge(self) -> str:
        """The AR run of the same budget: the yardstick of this run's gap."""
        return Run(JUDGE, self.factor).name


def planned_runs(arguments: argparse.Namespace) -> list[Run]:
    """The fits of this report: every --models model, then the --longer_models at --longer times the steps."""
    runs = [Run(model) for model in arguments.models]
    if arguments.longer > 1:
        runs += [Run(model, arguments.longer) for model in arguments.longer_models]
    return runs


@dataclass
class Validation:
    """One model's bits/token on the shared validation blocks (module docstring, step 2)."""

    kind: str
    what: str
    blocks: int
    seq_len: int
    bits_per_token: float
    bits_per_token_se: float
    perplexity: float
    prior_nats_per_token: float
    time_samples: int | None
    parameters: int
    gap_ppl_ratio: float | None = None
    gap_ppl_ratio_se: float | None = None
    seconds: float = 0.0
    fixed_order: dict | None = None


@dataclass
class SampleRow:
    """One (model, sampler, NFE budget) cell: the judge's score of the samples (module docstring, step 3)."""

    model: str
    sampler: str
    nfe_budget: int | None
    steps: int | None
    nfe: float
    num_samples: int
    length: int
    gen_ppl: float
    gen_ppl_se: float
    mean_nll_per_token: float
    unigram_entropy_nats: float
    seconds_per_sample: float | None
    samples_file: str | None = None


@dataclass
class Report:
    settings: dict
    training: dict[str, Training] = field(default_factory=dict)
    validation: dict[str, Validation] = field(default_factory=dict)
    samples: list[SampleRow] = field(default_factory=list)
    references: list[SampleRow] = field(default_factory=list)
    cache: list[CacheTiming] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ training
def config_steps(config: str) -> int:
    """trainer.max_steps of a committed config."""
    return int(yaml.safe_load((ROOT / config).read_text(encoding="utf-8"))["trainer"]["max_steps"])


def fit_overrides(run: Run, arguments: argparse.Namespace) -> list[str]:
    """The overrides of run's fit: the steps of its budget, the shared data options, the block size of a bd3lm-S
    model (network and loss), the GPU with --device cuda, then --fit_arg."""
    overrides = []
    steps = arguments.steps if run.factor == 1 else run.factor * (arguments.steps or config_steps(run.config))
    for key, value in (("trainer.max_steps", steps), ("data.seq_len", arguments.seq_len),
                       ("data.batch_size", arguments.batch_size)):
        if value is not None:
            overrides.append(f"--{key}={value}")
    if run.block_size is not None:
        overrides += [f"--model.network.init_args.block_size={run.block_size}",
                      f"--model.loss.init_args.block_size={run.block_size}"]
    if arguments.device.startswith("cuda"):
        overrides += ["--trainer.accelerator=gpu", "--trainer.devices=1"]
    return overrides + list(arguments.fit_arg)


def train(run: Run, arguments: argparse.Namespace, work_dir: Path, environment: dict[str, str]) -> Training:
    """The checkpoint of `run`: given by --ckpt, reused (--reuse), or fitted now (benchmarks.fits.train)."""
    return fits.train(run.name, run.config, fit_overrides(run, arguments), work_dir, environment,
                      arguments.ckpt.get(run.name), arguments.reuse)


# ---------------------------------------------------------------------------------------------- validation
def check_same_data(loaded: dict[str, TrainedModel], data: dict[str, dict]) -> None:
    """Raise SystemExit unless every model was trained on the judge's corpus, tokenizer and split."""
    reference = data[JUDGE]
    for name, section in data.items():
        if name == JUDGE:
            continue
        differs = [key for key in DATA_KEYS if section.get(key) != reference.get(key)]
        if differs:
            key = differs[0]
            raise SystemExit(f"error: --ckpt {name}: trained with data.{key}={section.get(key)!r}, the judge ({JUDGE}) "
                             f"with {reference.get(key)!r}; all models must share the corpus, tokenizer and split")
        check_same_tokenizer(loaded[JUDGE], loaded[name])


def validate(name: str, trained: TrainedModel, blocks: torch.Tensor, arguments: argparse.Namespace) -> tuple[
        Validation, torch.Tensor]:
    """Bits/token of `trained` on `blocks` (N, L) and the per-sequence nats (N,) (module docstring, step 2)."""
    start = time.perf_counter()
    diffusion = trained.kind == "diffusion"
    draws = trained.time_samples
    nats = sequence_nats(trained, blocks, draws, arguments.seed, arguments.batch)
    lengths = torch.full_like(nats, float(blocks.shape[1]))
    estimate = ratio_estimate(nats, lengths)
    result = Validation(
        kind=trained.kind,
        what="negative ELBO + prior term (upper bound)" if diffusion else "exact NLL",
        blocks=blocks.shape[0], seq_len=blocks.shape[1], bits_per_token=estimate.value / LN2,
        bits_per_token_se=(estimate.standard_error or math.nan) / LN2, perplexity=math.exp(estimate.value),
        prior_nats_per_token=total_prior_nats(trained, blocks) / float(lengths.sum()),
        time_samples=draws if diffusion else None, parameters=models.count_parameters(trained.network),
    )
    if name in arguments.order_models and arguments.orders > 0:
        result.fixed_order = fixed_order(trained, blocks[: arguments.order_blocks], nats[: arguments.order_blocks],
                                         arguments)
    result.seconds = time.perf_counter() - start
    return result, nats


def fixed_order(trained: TrainedModel, blocks: torch.Tensor, bound_nats: torch.Tensor,
                arguments: argparse.Namespace) -> dict:
    """RADD's exact likelihood over random orders on `blocks` (mean over orders, SE over orders) beside the
    bound on the same blocks."""
    start = time.perf_counter()
    per_order = fixed_order_nats(trained, blocks, "random", arguments.orders, arguments.seed, arguments.batch, 1.0)
    tokens = float(blocks.numel())
    per_token = per_order.sum(1) / tokens  # (K,) nats/token of each order
    se = float(per_token.std(correction=1)) / math.sqrt(per_token.numel()) if per_token.numel() > 1 else None
    bound = ratio_estimate(bound_nats, torch.full_like(bound_nats, float(blocks.shape[1])))
    return {
        "orders": per_token.numel(), "blocks": blocks.shape[0],
        "bits_per_token": float(per_token.mean()) / LN2,
        "bits_per_token_se_over_orders": None if se is None else se / LN2,  # one order: no SE
        "bound_bits_per_token_same_blocks": bound.value / LN2,
        "bound_bits_per_token_se_same_blocks": (bound.standard_error or math.nan) / LN2,
        "seconds": time.perf_counter() - start,
    }


def add_gaps(validation: dict[str, Validation], nats: dict[str, torch.Tensor], runs: list[Run]) -> None:
    """Perplexity ratio exp(R_model - R_AR) with the SE of the paired per-sequence differences, against the AR run
    of the same budget."""
    for run in runs:
        name, judge = run.name, run.judge
        if name == judge:
            continue
        result = validation[name]
        difference = ratio_estimate(nats[name] - nats[judge], torch.full_like(nats[name], float(result.seq_len)))
        result.gap_ppl_ratio = math.exp(difference.value)
        result.gap_ppl_ratio_se = result.gap_ppl_ratio * (difference.standard_error or math.nan)


# ------------------------------------------------------------------------------------------------- samples
def sampler_plan(trained: TrainedModel, budgets: list[int], length: int, names: list[str] | None) -> list[
        tuple[str, int, int | None]]:
    """(sampler, NFE budget, steps) for every applicable sampler and budget (module docstring, step 3). A block
    model draws L / S blocks of S tokens, each with the sampler: a budget N gives each block n = N S / L calls
    (budgets that the blocks do not share evenly are left out), and the steps are those of budget n at length S."""
    absorbing = trained.process.rate_matrix.score_factorises
    size = getattr(trained, "block_size", None) or length
    blocks = length // size
    plan, seen = [], set()
    for sampler in SAMPLERS_ABSORBING if absorbing else SAMPLERS_ANY_CHAIN:
        if names is not None and sampler not in names:
            continue
        for budget in budgets:
            if budget % blocks:
                continue
            per_block = budget // blocks
            if sampler == "first-hitting":
                steps = None if per_block >= size else per_block
            elif sampler == "trapezoidal":
                steps = (per_block - 1) // 2
            else:
                steps = per_block - 1
            if (steps is not None and steps < 1) or (sampler, steps) in seen:
                continue
            seen.add((sampler, steps))
            plan.append((sampler, budget, steps))
    return plan


def write_samples(path: Path, trained: TrainedModel, tokens: torch.Tensor, nfe: float, description: str) -> str:
    """The decoded samples in `lightning sample`'s format (so that `evaluate --judge --samples` reads them)."""
    texts = [trained.tokenizer.decode(row) for row in tokens.tolist()]
    entropies = [samplers.unigram_entropy(row) for row in tokens]
    path.write_text(format_samples(Samples(texts, tokens, entropies, nfe), description), encoding="utf-8")
    return str(path.relative_to(path.parents[1]))


def score(judge: TrainedModel, tokens: torch.Tensor, batch: int, **fields) -> SampleRow:
    """The judge's SampleRow of `tokens` (N, L)."""
    result = judge_tokens(judge, tokens, batch)
    return SampleRow(num_samples=result.num_samples, length=result.length, gen_ppl=result.gen_ppl,
                     gen_ppl_se=result.standard_error, mean_nll_per_token=float(result.nll_per_token.mean()),
                     unigram_entropy_nats=result.unigram_entropy, **fields)


def sample_and_judge(name: str, trained: TrainedModel, judge: TrainedModel, length: int, arguments: argparse.Namespace,
                     samples_dir: Path) -> list[SampleRow]:
    """Every planned (sampler, budget) of diffusion model `name`, judged."""
    rows = []
    for sampler, budget, steps in sampler_plan(trained, arguments.nfe, length, arguments.samplers):
        drawn = draw_samples(trained, arguments.num_samples, length, arguments.seed, sampler, {"steps": steps})
        file = samples_dir / f"{name}_{sampler}_nfe{budget}.txt"
        written = write_samples(file, trained, drawn.tokens, drawn.nfe,
                                f"{name}, {drawn.sampler}, budget NFE {budget}, seed {arguments.seed}")
        row = score(judge, drawn.tokens, arguments.batch, model=name, sampler=sampler, nfe_budget=budget, steps=steps,
                    nfe=drawn.nfe, seconds_per_sample=drawn.seconds_per_sample, samples_file=written)
        print(f"  [{name}] {sampler:<13} budget {budget:>3}: NFE {row.nfe:6.2f}  gen-PPL {row.gen_ppl:9.2f} +- "
              f"{row.gen_ppl_se:8.2f}  entropy {row.unigram_entropy_nats:.3f}  {row.seconds_per_sample:.3f} s/sample",
              flush=True)
        rows.append(row)
    return rows


def references(judge: TrainedModel, blocks: torch.Tensor, length: int, arguments: argparse.Namespace,
               samples_dir: Path) -> list[SampleRow]:
    """The AR model's own ancestral samples and the validation blocks, under the judge."""
    drawn = draw_samples(judge, arguments.num_samples, length, arguments.seed)
    written = write_samples(samples_dir / "ar_ancestral.txt", judge, drawn.tokens, drawn.nfe,
                            f"{JUDGE}, ancestral, seed {arguments.seed}")
    rows = [score(judge, drawn.tokens, arguments.batch, model=JUDGE, sampler="ancestral (judge's own samples)",
                  nfe_budget=None, steps=None, nfe=drawn.nfe, seconds_per_sample=drawn.seconds_per_sample,
                  samples_file=written)]
    rows.append(score(judge, blocks[:, :length], arguments.batch, model="data", sampler="validation blocks",
                      nfe_budget=None, steps=None, nfe=0.0, seconds_per_sample=None))
    return rows


# ------------------------------------------------------------------------------------------------- output
def plus_minus(se: float | None) -> str:
    """" +- 0.123" for a standard error, "" when there is none (a single order)."""
    return "" if se is None else f" +- {se:.3f}"


def markdown(report: Report) -> str:
    """The tables of the report as Markdown."""
    settings = report.settings
    lines = [f"Command: `{settings['command']}`", "",
             f"Validation: the same {settings['val_blocks']} blocks of {settings['seq_len']} tokens for every model; "
             "bits/token +- one SE (ratio estimator over blocks; the gap's SE from paired differences). The unigram "
             "model of the training blocks (add-1/2 counts) scores "
             f"{settings['unigram_bits_per_token']:.3f} bits/token on these blocks: the level any model must beat.",
             "",
             "| model | config | parameters | bits/token | measures | perplexity | gap to AR (ppl ratio) "
             "| prior term (nats/tok) | steps | train wall (s) | validation wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in report.validation.items():
        training = report.training[name]
        gap = "1 (reference)" if result.gap_ppl_ratio is None else (
            f"{result.gap_ppl_ratio:.3f} +- {result.gap_ppl_ratio_se:.3f}")
        wall = "reused" if training.wall_s is None else f"{training.wall_s:.0f}"
        lines.append(f"| {name} | {training.config} | {result.parameters:,} | "
                     f"{result.bits_per_token:.3f} +- {result.bits_per_token_se:.3f} | "
                     f"{result.what} | {result.perplexity:.1f} | {gap} | {result.prior_nats_per_token:.2e} | "
                     f"{training.steps if training.steps is not None else '?'} | {wall} | {result.seconds:.0f} |")
    for name, result in report.validation.items():
        fixed = result.fixed_order
        if fixed:
            lines += ["", f"{name}, exact fixed-order likelihood (losses.any_order_log_likelihood) on the first "
                      f"{fixed['blocks']} blocks, mean over {fixed['orders']} random orders (+- SE over orders): "
                      f"**{fixed['bits_per_token']:.3f}{plus_minus(fixed['bits_per_token_se_over_orders'])}** "
                      "bits/token; "
                      f"its bound on the same blocks: {fixed['bound_bits_per_token_same_blocks']:.3f} +- "
                      f"{fixed['bound_bits_per_token_se_same_blocks']:.3f} ({fixed['seconds']:.0f} s)."]
    lines += ["", f"Samples: {settings['num_samples']} per cell, {settings['length']} tokens, judge: the AR model "
              "above; gen-PPL +- SE over samples (delta method); entropy: mean per-sample unigram entropy (nats).", "",
              "| model | sampler | NFE budget | steps | NFE measured | gen-PPL | unigram entropy | s / sample |",
              "|---|---|---|---|---|---|---|---|"]
    for row in [*report.samples, *report.references]:
        budget = "" if row.nfe_budget is None else str(row.nfe_budget)
        steps = "exact" if row.steps is None and row.sampler == "first-hitting" else (
            "" if row.steps is None else str(row.steps))
        seconds = "" if row.seconds_per_sample is None else f"{row.seconds_per_sample:.3f}"
        nfe = "" if row.model == "data" else f"{row.nfe:.2f}"
        lines.append(f"| {row.model} | {row.sampler} | {budget} | {steps} | {nfe} | {row.gen_ppl:.1f} +- "
                     f"{row.gen_ppl_se:.1f} | {row.unigram_entropy_nats:.3f} | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> str | None:
    """Val bits/token per model and gen-PPL / entropy against NFE per sampler; None if matplotlib is missing."""
    plt = fits.pyplot()
    if plt is None:
        return None
    import matplotlib.ticker
    block_models = report.settings.get("block_models", [])
    names = [name for name in report.settings["models"] if name not in block_models]  # blocks: quality_blocks.png
    diffusion = [name for name in names if name != JUDGE]
    figure, axes = plt.subplots(2, 1 + len(diffusion), figsize=(4.2 * (1 + len(diffusion)), 7.5), squeeze=False)
    values = [report.validation[name].bits_per_token for name in names]
    errors = [report.validation[name].bits_per_token_se for name in names]
    axes[0, 0].bar(names, values, yerr=errors, capsize=4, color=["tab:gray", *["tab:blue"] * len(diffusion)])
    for name in names:
        fixed = report.validation[name].fixed_order
        if fixed:
            axes[0, 0].errorbar([name], [fixed["bits_per_token"]], yerr=[fixed["bits_per_token_se_over_orders"] or 0],
                                fmt="D", color="tab:red", label="exact, random orders")
    unigram = report.settings["unigram_bits_per_token"]
    axes[0, 0].axhline(unigram, color="k", linestyle="--", label="unigram model")
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_ylim(min([*values, unigram]) - 1.0, max([*values, unigram]) + 0.5)
    axes[0, 0].set_ylabel("val bits/token (AR exact, diffusion bound)")
    axes[0, 0].tick_params(axis="x", labelrotation=30)
    axes[1, 0].axis("off")
    reference = {row.sampler: row for row in report.references}
    for column, name in enumerate(diffusion, start=1):
        for sampler in dict.fromkeys(row.sampler for row in report.samples if row.model == name):
            rows = [row for row in report.samples if row.model == name and row.sampler == sampler]
            nfe = [row.nfe for row in rows]
            axes[0, column].errorbar(nfe, [row.gen_ppl for row in rows], yerr=[row.gen_ppl_se for row in rows],
                                     marker="o", capsize=3, label=sampler)
            axes[1, column].plot(nfe, [row.unigram_entropy_nats for row in rows], marker="o", label=sampler)
        for label, row, style in (("AR samples", reference.get("ancestral (judge's own samples)"), ":"),
                                  ("validation text", reference.get("validation blocks"), "--")):
            if row is not None:
                axes[0, column].axhline(row.gen_ppl, color="k", linestyle=style, label=label)
                axes[1, column].axhline(row.unigram_entropy_nats, color="k", linestyle=style, label=label)
        axes[0, column].set(title=name, xscale="log", yscale="log", ylabel="gen-PPL (judge: AR)")
        axes[1, column].set(xscale="log", xlabel="NFE (measured)", ylabel="unigram entropy (nats)")
        for axis in axes[:, column]:
            axis.set_xticks(report.settings["nfe"], [str(budget) for budget in report.settings["nfe"]])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes[0, column].legend(fontsize=7)
    return fits.save_figure(figure, path, report.settings["command"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fits.add_run_arguments(parser, "quality", "reuse a checkpoint instead of training NAME (a model, or MODEL-xF of "
                           "the longer budget)", "torch device of validation and sampling (cuda: fits on GPU)")
    parser.add_argument("--seq_len", type=int, help="tokens per block of every model (default: the configs' 32)")
    parser.add_argument("--batch_size", type=int, help="blocks per step of every model (default: the configs' 8)")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), help="the models of the report (the first "
                        f"must be {JUDGE}, the judge): {', '.join(CONFIGS)}")
    parser.add_argument("--longer", type=int, default=4, help="refit --longer_models with this many times the steps "
                        "(1: no longer budget)")
    parser.add_argument("--longer_models", nargs="+", default=list(LONGER_MODELS),
                        help=f"the models of the longer budget ({JUDGE} first: each gap is to the AR model of the "
                        "same budget)")
    parser.add_argument("--cache_length", type=int, default=256, help="tokens per sample of the block models' "
                        "key/value-cache timing (0: none)")
    parser.add_argument("--val_blocks", type=int, default=512, help="validation blocks (the same for every model)")
    parser.add_argument("--orders", type=int, default=2, help="random orders of RADD's exact likelihood (0: none)")
    parser.add_argument("--order_blocks", type=int, default=64, help="blocks of the exact likelihood")
    parser.add_argument("--order_models", nargs="*", default=["radd"], help="models that get the exact likelihood")
    parser.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64], help="NFE budgets of the samplers")
    parser.add_argument("--samplers", nargs="+", help=f"restrict to these samplers ({', '.join(SAMPLERS_ABSORBING)})")
    parser.add_argument("--num_samples", type=int, default=16, help="samples per (model, sampler, NFE)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per network call in validation / judging")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation draws, orders and samples")
    return parser


def check_arguments(arguments: argparse.Namespace) -> None:
    fits.check_at_least(arguments, {"steps": 1, "seq_len": 1, "batch_size": 1, "threads": 1, "val_blocks": 2,
                                    "num_samples": 2, "batch": 1, "orders": 0, "order_blocks": 1, "seed": 0})
    if min(arguments.nfe) < 1:
        raise SystemExit(f"error: --nfe budgets must be >= 1, got {arguments.nfe}")
    unknown = [name for name in arguments.samplers or [] if name not in SAMPLERS_ABSORBING]
    if unknown:
        raise SystemExit(f"error: --samplers {unknown[0]!r}: use some of {', '.join(SAMPLERS_ABSORBING)}")
    unknown = [name for name in arguments.order_models if name not in CONFIGS or name == JUDGE]
    if unknown:
        raise SystemExit(f"error: --order_models {unknown[0]!r}: use diffusion models of {', '.join(CONFIGS)}")
    for option in ("models", "longer_models"):
        values = getattr(arguments, option)
        unknown = [name for name in values if name not in CONFIGS]
        if unknown:
            raise SystemExit(f"error: --{option} {unknown[0]!r}: use some of {', '.join(CONFIGS)}")
        if values[0] != JUDGE or len(set(values)) != len(values):
            raise SystemExit(f"error: --{option} must start with {JUDGE} (the yardstick of every gap) and name each "
                             f"model once, got {' '.join(values)}")
    if arguments.longer < 1 or arguments.cache_length < 0:
        raise SystemExit(f"error: --longer must be >= 1 and --cache_length >= 0, got {arguments.longer} and "
                         f"{arguments.cache_length}")


def main(argv: list[str] | None = None) -> Report:
    """Parse the options and run the report; bad input ends it with one line, `error: ...`."""
    arguments = build_parser().parse_args(argv)
    check_arguments(arguments)
    arguments.ckpt = fits.parse_checkpoints(arguments.ckpt, [run.name for run in planned_runs(arguments)])
    return fits.run_report(run, arguments, "benchmarks.quality", argv)


def run(arguments: argparse.Namespace, command: str) -> Report:
    """Train, validate, sample and judge, then write the JSON, the Markdown tables and the plot."""
    environment = fits.thread_environment(arguments.threads)
    work_dir = Path(arguments.work_dir)
    (work_dir / "samples").mkdir(parents=True, exist_ok=True)
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    report = Report(settings={"command": command, "torch": torch.__version__, "python": platform.python_version(),
                              "threads": torch.get_num_threads(), "device": arguments.device})
    started = time.perf_counter()
    runs = planned_runs(arguments)
    for run in runs:
        report.training[run.name] = train(run, arguments, work_dir, environment)
    report.seconds["training"] = time.perf_counter() - started

    start = time.perf_counter()
    loaded = {name: load_trained(training.checkpoint, None, arguments.device) for name, training
              in report.training.items()}
    data = {name: training_data(training.checkpoint) for name, training in report.training.items()}
    check_same_data(loaded, {name: trained.data for name, trained in loaded.items()})
    blocks = validation_blocks(data[JUDGE], min(arguments.val_blocks, len(data[JUDGE].validation)))
    length = blocks.shape[1]
    unigram = unigram_log_probs(data[JUDGE].train, loaded[JUDGE].vocab_size)
    report.settings.update(models=[run.name for run in runs if run.factor == 1],
                           block_models=[run.name for run in runs if run.factor == 1 and run.block_size is not None],
                           longer=arguments.longer if arguments.longer > 1 else None,
                           longer_models=[run.model for run in runs if run.factor > 1])
    report.settings.update(val_blocks=blocks.shape[0], seq_len=length, length=length,
                           unigram_bits_per_token=float(-unigram[blocks].sum()) / blocks.numel() / LN2,
                           num_samples=arguments.num_samples, nfe=arguments.nfe, orders=arguments.orders,
                           order_blocks=min(arguments.order_blocks, blocks.shape[0]))
    nats = {}
    for name, trained in loaded.items():
        report.validation[name], nats[name] = validate(name, trained, blocks, arguments)
        result = report.validation[name]
        print(f"[{name}] {result.bits_per_token:.3f} +- {result.bits_per_token_se:.3f} bits/token ({result.what}, "
              f"{result.seconds:.0f} s)", flush=True)
    add_gaps(report.validation, nats, runs)
    report.seconds["validation"] = time.perf_counter() - start

    start = time.perf_counter()
    judge = loaded[JUDGE]
    for run in runs:
        if run.name != JUDGE and run.factor == 1:
            report.samples += sample_and_judge(run.name, loaded[run.name], judge, length, arguments,
                                               work_dir / "samples")
    report.references = references(judge, blocks, length, arguments, work_dir / "samples")
    report.seconds["sampling"] = time.perf_counter() - start

    start = time.perf_counter()
    if arguments.cache_length:
        for run in runs:
            if run.block_size is not None and run.factor == 1:
                report.cache.append(cache_timing(run.name, loaded[run.name], arguments.cache_length,
                                                 arguments.num_samples, arguments.seed))
                print(f"  [{run.name}] {report.cache[-1].summary()}", flush=True)
    report.seconds["cache_timing"] = time.perf_counter() - start

    report.settings["plot"] = plot(report, work_dir / "quality.png")
    report.settings["block_plot"] = block_plot(report, work_dir / "quality_blocks.png")
    fits.write_report(report, markdown(report) + block_markdown(report), work_dir, arguments.out)
    return report


if __name__ == "__main__":
    main()
