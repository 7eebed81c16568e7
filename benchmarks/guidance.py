"""Guided sampling by genre: does guidance give the requested kind of text, and what does it cost in quality?

Run (from the repository root; docs/results.md, "Guidance", gives the measured tables and the commands):

    python -m benchmarks.guidance                          # the genre configs as committed (600 steps), 64 samples
    python -m benchmarks.guidance --reuse                  # again, on the checkpoints of an earlier run here
    python -m benchmarks.guidance --ckpt ar=PATH ...       # reuse some checkpoints, train the others

1. Training, one fit after the other, each `python -m training fit -c CONFIG [overrides]
   --trainer.default_root_dir=<work_dir>/runs/NAME` in a subprocess (in-training validation and sample logging off;
   neither changes the weights): the genre models on the absorbing chain, SEDD (configs/sedd-genre.yaml) and RADD
   (configs/radd-genre.yaml), and on the uniform chain (configs/sedd-uniform.yaml with --data.labels=genre); the
   AR judge (configs/ar.yaml, unconditional); and the classifier of noisy sequences of predictor guidance
   (configs/classifier-genre.yaml). `--steps` overrides every fit's budget alike.
2. Bounds, on the first `--val_blocks` validation blocks with their genres (the blocks the configs validate on):
   per block the negative ELBO plus the prior term given the block's genre (conditional) and given the null label
   (unconditional), with the same noise (evaluation.restore.TrainedModel.negative_elbo_draws), so that their paired
   difference, the label's information in bits/token, has a small SE (ratio estimator over blocks).
3. Samples. For every genre model, every gamma in `--gammas` and every genre, `--num_samples` samples of seq_len
   tokens with the Euler sampler (`--sampler_steps` steps and the final denoising step) from the classifier-free
   guided model (evaluation.guidance.guided_model: gamma 0 and 1 one network call per step, other gammas one call
   on twice the rows); for SEDD also predictor guidance of its unconditional score (null label) with the classifier.
   Each cell is judged by
   - the independent judge (evaluation.class_judge: a naive Bayes of the training blocks and their genres): the
     share of samples assigned to the requested genre, with its binomial SE, beside the genre's share of the
     training blocks and the judge's recall on the genre's validation blocks (real text);
   - the AR judge: gen-PPL with its delta-method SE over samples, and the samples' unigram entropy (nats).
   The seed of a cell depends on the genre, not on gamma, so the cells of one genre differ only in gamma.
4. Output: JSON (`--out`), the tables as Markdown in <work_dir>/results.md, the samples under <work_dir>/samples/
   (in `lightning sample`'s format), a plot <work_dir>/guidance.png (matplotlib, the `dev` extra; without it none),
   and the goals checked: at gamma 2, >= 80 % of samples assigned to the requested genre; gen-PPL within 1.5x of
   gamma 1's.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import samplers
from benchmarks import fits
from benchmarks.fits import Training
from evaluation.bounds import ratio_estimate
from evaluation.class_judge import judge_class, naive_bayes_judge
from evaluation.generation import Samples, draw_samples, format_samples
from evaluation.guidance import guided_model
from evaluation.judge import check_same_tokenizer, judge_tokens
from evaluation.restore import TrainedModel, load_trained
from evaluation.seeding import mixed_seed
from evaluation.training_data import training_data

GENRE_MODELS = {  # name -> (config, overrides): the conditional models, guided
    "sedd-genre": ("configs/sedd-genre.yaml", []),
    "radd-genre": ("configs/radd-genre.yaml", []),
    "sedd-uniform-genre": ("configs/sedd-uniform.yaml", ["--data.labels=genre"]),
}
JUDGE = "ar"
CLASSIFIER = "classifier"
PREDICTOR_GUIDED = "sedd-genre"  # predictor guidance of this model's unconditional score with the classifier
CONFIGS = {**{name: config for name, (config, _) in GENRE_MODELS.items()}, JUDGE: "configs/ar.yaml",
           CLASSIFIER: "configs/classifier-genre.yaml"}
OVERRIDES = {name: overrides for name, (_, overrides) in GENRE_MODELS.items()}
DATA_KEYS = ("paths", "tokenizer", "seq_len", "val_fraction", "seed")  # what fixes the blocks and the split
GOAL_GAMMA, GOAL_SHARE, GOAL_PPL_RATIO = 2.0, 0.8, 1.5
LN2 = math.log(2.0)


@dataclass
class Bound:
    """A genre model's bits/token on the labelled validation blocks: given the genre, given the null label, and the
    label's information (their paired difference), each with one SE."""

    blocks: int
    conditional: float
    conditional_se: float
    unconditional: float
    unconditional_se: float
    label_information: float
    label_information_se: float


@dataclass
class Cell:
    """One (model, mode, gamma, genre) cell of samples, judged (module docstring, step 3)."""

    model: str
    mode: str
    gamma: float
    genre: str
    share: float
    share_se: float
    data_share: float
    judge_recall: float
    judge_recall_se: float
    gen_ppl: float
    gen_ppl_se: float
    unigram_entropy_nats: float
    nfe: float
    seconds_per_sample: float
    num_samples: int
    samples_file: str


@dataclass
class Report:
    settings: dict
    training: dict[str, Training] = field(default_factory=dict)
    bounds: dict[str, Bound] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    goals: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ training
def train(name: str, arguments: argparse.Namespace, work_dir: Path, environment: dict[str, str]) -> Training:
    """The checkpoint of `name`: given by --ckpt, reused (--reuse), or fitted now (benchmarks.fits.train) with
    --steps and --fit_arg."""
    steps = [] if arguments.steps is None else [f"--trainer.max_steps={arguments.steps}"]
    overrides = [*OVERRIDES.get(name, []), *steps, *arguments.fit_arg]
    return fits.train(name, CONFIGS[name], overrides, work_dir, environment, arguments.ckpt.get(name), arguments.reuse)


def check_same_data(loaded: dict[str, TrainedModel]) -> None:
    """Raise SystemExit unless every model was trained on the judge's corpus, tokenizer, block length and split."""
    reference = loaded[JUDGE].data
    for name, trained in loaded.items():
        differs = [key for key in DATA_KEYS if trained.data.get(key) != reference.get(key)]
        if differs:
            key = differs[0]
            raise SystemExit(f"error: {name}: trained with data.{key}={trained.data.get(key)!r}, the judge with "
                             f"{reference.get(key)!r}; all models must share the corpus, tokenizer and split")
        check_same_tokenizer(loaded[JUDGE], trained)


# -------------------------------------------------------------------------------------------------- bounds
def labelled_bound(trained: TrainedModel, blocks: torch.Tensor, labels: torch.Tensor, seed: int, batch: int) -> Bound:
    """Bits/token of the genre model on blocks (N, L) given labels (N,) and given the null label, on the same noise,
    and their paired difference (module docstring, step 2)."""
    conditional, null = [], []
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch):
            x0 = blocks[start : start + batch].to(trained.device)
            label = labels[start : start + batch].to(trained.device)
            prior = trained.prior_nats(x0)
            draws = trained.time_samples
            conditional.append((trained.negative_elbo_draws(x0, draws, seed, label).double().mean(1) + prior).cpu())
            nulls = torch.full_like(label, trained.num_classes)
            null.append((trained.negative_elbo_draws(x0, draws, seed, nulls).double().mean(1) + prior).cpu())
    given, unconditional = torch.cat(conditional), torch.cat(null)
    tokens = torch.full_like(given, float(blocks.shape[1]))
    estimates = [ratio_estimate(values, tokens) for values in (given, unconditional, unconditional - given)]
    values = [(estimate.value / LN2, (math.nan if estimate.standard_error is None else estimate.standard_error) / LN2)
              for estimate in estimates]
    return Bound(blocks.shape[0], *values[0], *values[1], *values[2])


# ------------------------------------------------------------------------------------------------- samples
def write_samples(path: Path, trained: TrainedModel, tokens: torch.Tensor, nfe: float, description: str) -> str:
    """The decoded samples in `lightning sample`'s format (`lightning judge --samples` reads them back)."""
    texts = [trained.tokenizer.decode(row) for row in tokens.tolist()]
    entropies = [samplers.unigram_entropy(row) for row in tokens]
    path.write_text(format_samples(Samples(texts, tokens, entropies, nfe), description), encoding="utf-8")
    return str(path.relative_to(path.parents[1]))


def sample_cells(name: str, mode: str, trained: TrainedModel, classifier: TrainedModel | None, context: dict,
                 arguments: argparse.Namespace, samples_dir: Path) -> list[Cell]:
    """Every (gamma, genre) cell of model `name` guided in `mode` ("classifier-free" or "predictor"), judged."""
    data, judge, ar = context["data"], context["judge"], context["ar"]
    cells = []
    for gamma in arguments.gammas:
        for label, genre in enumerate(data.class_names):
            model = guided_model(trained, label, gamma, classifier if mode == "predictor" else None)
            seed = mixed_seed(arguments.seed, label)
            drawn = draw_samples(trained, arguments.num_samples, data.seq_len, seed, "euler",
                                 {"steps": arguments.sampler_steps}, sampling_model=model)
            verdict = judge_class(judge, data, drawn.tokens, label)
            score = judge_tokens(ar, drawn.tokens, arguments.batch)
            file = samples_dir / f"{name}_{mode}_gamma{gamma:g}_{genre}.txt"
            written = write_samples(file, trained, drawn.tokens, drawn.nfe,
                                    f"{name}, {drawn.sampler}, {mode}, label {genre}, guidance {gamma:g}, seed {seed}")
            cell = Cell(name, mode, gamma, genre, verdict.share.share, verdict.share.standard_error, verdict.data_share,
                        verdict.recall.share, verdict.recall.standard_error, score.gen_ppl, score.standard_error,
                        score.unigram_entropy, drawn.nfe, drawn.seconds_per_sample, arguments.num_samples, written)
            print(f"  [{name} {mode}] gamma {gamma:g} {genre:<8} share {cell.share:.3f} +- {cell.share_se:.3f} "
                  f"(data {cell.data_share:.3f})  gen-PPL {cell.gen_ppl:8.1f} +- {cell.gen_ppl_se:6.1f}  entropy "
                  f"{cell.unigram_entropy_nats:.3f}  NFE {cell.nfe:g}  {cell.seconds_per_sample:.2f} s/sample",
                  flush=True)
            cells.append(cell)
    return cells


def mean_over_genres(cells: list[Cell], key: str) -> tuple[float, float]:
    """The mean of `key` over the cells (one per genre) and its SE from the cells' SEs (independent cells)."""
    values = [getattr(cell, key) for cell in cells]
    errors = [getattr(cell, f"{key}_se") for cell in cells]
    return sum(values) / len(values), math.sqrt(sum(error**2 for error in errors)) / len(errors)


def goals(cells: list[Cell]) -> dict[str, dict]:
    """Per (model, mode): at gamma 2, the share per genre and its mean (goal >= 0.8), and the gen-PPL ratio of
    gamma 2 to gamma 1, mean over genres (goal <= 1.5)."""
    result = {}
    for model, mode in dict.fromkeys((cell.model, cell.mode) for cell in cells):
        rows = [cell for cell in cells if cell.model == model and cell.mode == mode]
        at = {gamma: [cell for cell in rows if cell.gamma == gamma] for gamma in (1.0, GOAL_GAMMA)}
        if not at[1.0] or not at[GOAL_GAMMA]:
            continue
        share, share_se = mean_over_genres(at[GOAL_GAMMA], "share")
        ratio = (sum(cell.gen_ppl for cell in at[GOAL_GAMMA]) / sum(cell.gen_ppl for cell in at[1.0]))
        result[f"{model} {mode}"] = {
            "share_per_genre": {cell.genre: cell.share for cell in at[GOAL_GAMMA]},
            "mean_share": share, "mean_share_se": share_se, "share_met": share >= GOAL_SHARE,
            "share_met_every_genre": all(cell.share >= GOAL_SHARE for cell in at[GOAL_GAMMA]),
            "gen_ppl_ratio_2_to_1": ratio, "gen_ppl_met": ratio <= GOAL_PPL_RATIO,
        }
    return result


# ------------------------------------------------------------------------------------------------- output
def markdown(report: Report) -> str:
    """The tables of the report as Markdown."""
    settings = report.settings
    lines = [f"Command: `{settings['command']}`", "",
             f"Bounds on the first {settings['val_blocks']} validation blocks ({settings['seq_len']} tokens) with "
             "their genres, bits/token +- one SE; the label's information is the paired difference.", "",
             "| model | given the genre | unconditional (null label) | label's information |", "|---|---|---|---|"]
    for name, bound in report.bounds.items():
        lines.append(f"| {name} | {bound.conditional:.3f} +- {bound.conditional_se:.3f} | {bound.unconditional:.3f} "
                     f"+- {bound.unconditional_se:.3f} | {bound.label_information:.4f} +- "
                     f"{bound.label_information_se:.4f} |")
    lines += ["", f"Samples: {settings['num_samples']} per cell, {settings['seq_len']} tokens, Euler "
              f"{settings['sampler_steps']} steps + denoising. Share: assigned to the requested genre by the naive "
              "Bayes judge (+- binomial SE); gen-PPL under the AR judge (+- delta-method SE); entropy: mean per-sample "
              "unigram entropy (nats). Genre columns: share / gen-PPL.", ""]
    genres = settings["genres"]
    lines += ["| model | guidance | gamma | mean share | " + " | ".join(genres) + " | mean gen-PPL | entropy | NFE |",
              "|---|---|---|---|" + "---|" * len(genres) + "---|---|---|"]
    groups = dict.fromkeys((cell.model, cell.mode, cell.gamma) for cell in report.cells)
    for model, mode, gamma in groups:
        rows = [cell for cell in report.cells if (cell.model, cell.mode, cell.gamma) == (model, mode, gamma)]
        share, share_se = mean_over_genres(rows, "share")
        ppl = sum(cell.gen_ppl for cell in rows) / len(rows)
        entropy = sum(cell.unigram_entropy_nats for cell in rows) / len(rows)
        per_genre = " | ".join(f"{cell.share:.2f} / {cell.gen_ppl:.0f}" for cell in rows)
        lines.append(f"| {model} | {mode} | {gamma:g} | {share:.3f} +- {share_se:.3f} | {per_genre} | {ppl:.1f} | "
                     f"{entropy:.3f} | {rows[0].nfe:g} |")
    reference = {cell.genre: cell for cell in report.cells}
    lines += ["", "| genre | share of the training blocks | judge's recall on its validation blocks |", "|---|---|---|"]
    for genre, cell in reference.items():
        lines.append(f"| {genre} | {cell.data_share:.3f} | {cell.judge_recall:.3f} +- {cell.judge_recall_se:.3f} |")
    lines += ["", f"Goals at gamma {GOAL_GAMMA:g}: share >= {GOAL_SHARE:.0%} (mean over genres, and every genre); "
              f"gen-PPL <= {GOAL_PPL_RATIO}x gamma 1's (ratio of the means over genres).", "",
              "| model | guidance | mean share | every genre >= 80 % | gen-PPL ratio | met |",
              "|---|---|---|---|---|---|"]
    for key, goal in report.goals.items():
        model, mode = key.split(" ", 1)
        met = "share and gen-PPL" if goal["share_met"] and goal["gen_ppl_met"] else (
            "gen-PPL only" if goal["gen_ppl_met"] else ("share only" if goal["share_met"] else "neither"))
        lines.append(f"| {model} | {mode} | {goal['mean_share']:.3f} +- {goal['mean_share_se']:.3f} | "
                     f"{'yes' if goal['share_met_every_genre'] else 'no'} | {goal['gen_ppl_ratio_2_to_1']:.2f} | "
                     f"{met} |")
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> str | None:
    """Share of the requested genre, gen-PPL and entropy against gamma per model; None without matplotlib."""
    plt = fits.pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for model, mode in dict.fromkeys((cell.model, cell.mode) for cell in report.cells):
        rows = [cell for cell in report.cells if (cell.model, cell.mode) == (model, mode)]
        gammas = sorted({cell.gamma for cell in rows})
        groups = [[cell for cell in rows if cell.gamma == gamma] for gamma in gammas]
        shares = [mean_over_genres(group, "share") for group in groups]
        label = f"{model} ({mode})"
        axes[0].errorbar(gammas, [s for s, _ in shares], yerr=[e for _, e in shares], marker="o", capsize=3,
                         label=label)
        axes[1].plot(gammas, [sum(c.gen_ppl for c in g) / len(g) for g in groups], marker="o", label=label)
        axes[2].plot(gammas, [sum(c.unigram_entropy_nats for c in g) / len(g) for g in groups], marker="o",
                     label=label)
    axes[0].axhline(GOAL_SHARE, color="k", linestyle="--", label="goal")
    genres = {cell.genre: cell for cell in report.cells}
    axes[0].axhline(sum(c.judge_recall for c in genres.values()) / len(genres), color="k", linestyle=":",
                    label="judge on real text")
    axes[0].set(xlabel="gamma", ylabel="share of the requested genre (mean over genres)", ylim=(0, 1))
    axes[1].set(xlabel="gamma", ylabel="gen-PPL under the AR judge (mean over genres)", yscale="log")
    axes[2].set(xlabel="gamma", ylabel="unigram entropy (nats)")
    axes[0].legend(fontsize=7)
    return fits.save_figure(figure, path, report.settings["command"])


# ------------------------------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.guidance", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fits.add_run_arguments(parser, "guidance", f"reuse a checkpoint instead of training NAME ({', '.join(CONFIGS)})",
                           "torch device of the bounds and sampling")
    parser.add_argument("--models", nargs="+", default=list(GENRE_MODELS), help="genre models to train and guide")
    parser.add_argument("--no_predictor", action="store_true", help="skip the classifier and predictor guidance")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0], help="guidance weights")
    parser.add_argument("--num_samples", type=int, default=64, help="samples per (model, guidance, gamma, genre)")
    parser.add_argument("--sampler_steps", type=int, default=32, help="Euler steps (plus the denoising step)")
    parser.add_argument("--val_blocks", type=int, default=512, help="labelled validation blocks of the bounds")
    parser.add_argument("--batch", type=int, default=16, help="sequences per network call in the bounds and judging")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bounds' noise and of the samples")
    return parser


def check_arguments(arguments: argparse.Namespace) -> None:
    fits.check_at_least(arguments, {"steps": 1, "threads": 1, "val_blocks": 2, "num_samples": 2, "batch": 1,
                                    "sampler_steps": 1, "seed": 0})
    bad = [gamma for gamma in arguments.gammas if not (math.isfinite(gamma) and gamma >= 0)]
    if bad:
        raise SystemExit(f"error: --gammas must be finite numbers >= 0, got {bad[0]}")
    unknown = [name for name in arguments.models if name not in GENRE_MODELS]
    if unknown:
        raise SystemExit(f"error: --models {unknown[0]!r}: use some of {', '.join(GENRE_MODELS)}")


def main(argv: list[str] | None = None) -> Report:
    """Parse the options and run the report; bad input ends it with one line, `error: ...`."""
    arguments = build_parser().parse_args(argv)
    check_arguments(arguments)
    arguments.ckpt = fits.parse_checkpoints(arguments.ckpt, list(CONFIGS))
    return fits.run_report(run, arguments, "benchmarks.guidance", argv)


def run(arguments: argparse.Namespace, command: str) -> Report:
    """Train, bound, sample and judge, then write the JSON, the Markdown tables and the plot."""
    environment = fits.thread_environment(arguments.threads)
    work_dir = Path(arguments.work_dir)
    (work_dir / "samples").mkdir(parents=True, exist_ok=True)
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    predictor = not arguments.no_predictor and PREDICTOR_GUIDED in arguments.models
    names = [JUDGE, *arguments.models, *([CLASSIFIER] if predictor else [])]
    report = Report(settings={"command": command, "torch": torch.__version__, "python": platform.python_version(),
                              "threads": torch.get_num_threads(), "device": arguments.device,
                              "gammas": arguments.gammas, "num_samples": arguments.num_samples,
                              "sampler_steps": arguments.sampler_steps})
    started = time.perf_counter()
    for name in names:
        report.training[name] = train(name, arguments, work_dir, environment)
    report.seconds["training"] = time.perf_counter() - started

    start = time.perf_counter()
    loaded = {name: load_trained(report.training[name].checkpoint, None, arguments.device) for name in names}
    check_same_data(loaded)
    data = training_data(loaded[arguments.models[0]])
    judge = naive_bayes_judge(data)
    count = min(arguments.val_blocks, len(data.validation))
    blocks = torch.stack([data.validation[index] for index in range(count)])
    labels = torch.as_tensor(data.labels_of(data.validation)[:count])
    report.settings.update(val_blocks=count, seq_len=data.seq_len, genres=list(data.class_names))
    for name in arguments.models:
        report.bounds[name] = bound = labelled_bound(loaded[name], blocks, labels, arguments.seed, arguments.batch)
        print(f"[{name}] given the genre {bound.conditional:.3f} +- {bound.conditional_se:.3f}, unconditional "
              f"{bound.unconditional:.3f} +- {bound.unconditional_se:.3f}, label {bound.label_information:.4f} +- "
              f"{bound.label_information_se:.4f} bits/token", flush=True)
    report.seconds["bounds"] = time.perf_counter() - start

    start = time.perf_counter()
    context = {"data": data, "judge": judge, "ar": loaded[JUDGE]}
    for name in arguments.models:
        report.cells += sample_cells(name, "classifier-free", loaded[name], None, context, arguments,
                                     work_dir / "samples")
    if predictor:
        report.cells += sample_cells(PREDICTOR_GUIDED, "predictor", loaded[PREDICTOR_GUIDED], loaded[CLASSIFIER],
                                     context, arguments, work_dir / "samples")
    report.seconds["sampling"] = time.perf_counter() - start
    report.goals = goals(report.cells)

    report.settings["plot"] = plot(report, work_dir / "guidance.png")
    fits.write_report(report, markdown(report), work_dir, arguments.out)
    return report


if __name__ == "__main__":
    main()
