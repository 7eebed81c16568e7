"""`lightning evaluate`: the negative-ELBO perplexity bound of a checkpoint on a text file, with its error.

    lightning evaluate --ckpt_path .../last.ckpt --text some.txt [--time_samples 8] [--seq_len 128]
        [--batch_size 8] [--seed 0] [--json] [--output FILE] [--config cfg.yaml] [--device cpu]
        [--order left-to-right|random --orders K [--score_total 1.0]]
    lightning evaluate --judge ar.ckpt --samples samples.txt | --ckpt_path model.ckpt   (training/judge.py)

On an autoregressive checkpoint (configs/ar.yaml) n_i is the exact -log p_theta(x_i) (no time samples; the
standard error below is then the spread between sequences only). On a diffusion checkpoint n_i includes the
t = 1 prior term KL(q(x_1 | x_i) || pi^L) (losses.PriorKL, forward prior), so that R is a true upper bound;
its size is reported beside it (`prior_nats_per_token`; D3PM's loss holds it already).

`--order` (absorbing chain: RADD, or SEDD's DiT through losses.denoiser_from_score_network at the fixed total
noise `--score_total`) also reports the exact fixed-order likelihood of losses.any_order_log_likelihood
beside the bound: left to right, or the mean over K = `--orders` random orders (a fresh permutation per
sequence and order, seeded by --seed) with the standard error of that mean over the K orders. It costs L
network calls per sequence and order.

The text is tokenised as the training data is (documents split at form-feed lines, each followed by the
end-of-text id) and cut into consecutive sequences of seq_len tokens (default: the training seq_len), the
last one shorter when the count does not divide. For each sequence i of L_i tokens, K draws give the
unbiased estimate n_i = (1/K) sum_k loss_k of its negative ELBO in nats, an upper bound on -log p(x_i). The
draws are the module's validation estimator (`DiffusionModule.negative_elbo_draws`): on the absorbing chain
(`model.val_estimator` auto or masked_count) K masked counts stratified over 1..L with importance-weighted
times (losses.MaskedCountEstimator; bounded terms), otherwise K times stratified through the loss's time law
(t_k from (u + k) / K, one shared uniform u; training/elbo.py).
The bound per token is the ratio of sums

    R = sum_i n_i / sum_i L_i                                     (nats/token; bits = R / ln 2; ppl <= e^R)

and its standard error is the delta-method SE of a ratio estimator over the N sequences,

    SE(R) = sqrt( sum_i (n_i - R L_i)^2 / (N (N - 1)) ) / mean_i(L_i),

which is the SE of the mean of the n_i / L when every sequence has L tokens. It counts the Monte-Carlo noise
of the time and noise draws and the spread between sequences (for a fixed text it over-covers the Monte-Carlo
error alone). By the delta method again, SE(bits) = SE(R) / ln 2 (exact: linear) and
SE(perplexity) = e^R SE(R) (first order).

Also reported: the unigram entropy of the text, over all its tokens (the cross-entropy of the best unigram
model of this text, a reference point), and the mean per-sequence unigram entropy (comparable with
`lightning sample`'s at the same length).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor

import losses
import samplers
from training.base_module import CONFIG_KEY
from training.data import TextDataModule
from training.data_corpus import TextCorpus
from training.elbo import RatioEstimate, ratio_estimate  # noqa: F401 (RatioEstimate: public name kept here)
from training.judge import JudgeReport, format_judge, judge_samples
from training.restore import (
    CommandParser,
    TrainedModel,
    check_device,
    check_output,
    load_trained,
    read_checkpoint,
    write_output,
)


def text_tokens(path: str, trained: TrainedModel) -> Tensor:
    """(T,) long: the documents of the file at `path`, each encoded and followed by the end-of-text id."""
    corpus = TextCorpus(path, argument="text")
    ids: list[int] = []
    for document in corpus.documents():
        ids.extend(trained.tokenizer.encode(document))
        ids.append(trained.tokenizer.eot_id)
    if not ids:
        raise ValueError(f"text: {path!r} holds no text; give a file that contains text")
    return torch.tensor(ids, dtype=torch.long)


def training_data(ckpt_path: str, config: str | None = None) -> TextDataModule:
    """The data module a checkpoint was trained on, rebuilt from the `data` section stored in it (or that of
    the YAML `config`): the same corpus, tokenizer, seq_len and seeded train/validation split."""
    if config is not None:
        if not Path(config).is_file():
            raise ValueError(f"config: {config!r} does not exist; give the YAML the checkpoint was trained with")
        stored = Path(config).read_text(encoding="utf-8")
    else:
        stored = read_checkpoint(ckpt_path).get(CONFIG_KEY, {}).get("config")
        if not stored:
            raise ValueError(f"ckpt_path: {ckpt_path!r} stores no training config; pass the YAML it was trained with")
    data = (yaml.safe_load(stored) or {}).get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"config: the data section of {ckpt_path!r} is not a mapping; pass the training YAML")
    return TextDataModule(**data)


def validation_blocks(data: TextDataModule, count: int | None = None) -> Tensor:
    """(N, seq_len) long: the first `count` (None: all) validation blocks of `data`, in the order `lightning
    validate` reads them, so that limit_val_batches = count / batch_size validates on the same blocks."""
    total = len(data.val_dataset)
    if count is not None and not 1 <= count <= total:
        raise ValueError(f"count: the data has {total} validation blocks; ask for 1 to {total}, got {count}")
    return torch.stack([data.val_dataset[index] for index in range(total if count is None else count)])


def corpus_entropy(tokens: Tensor) -> float:
    """Entropy (nats) of the token histogram of all of `tokens` (T,): -sum_v f_v log f_v."""
    frequencies = torch.bincount(tokens).double()
    frequencies = frequencies[frequencies > 0] / tokens.numel()
    return float(-(frequencies * frequencies.log()).sum())


@dataclass
class Evaluation:
    """The result of `evaluate`, as printed and written to JSON. SEs are None with a single sequence."""

    checkpoint: str
    text: str
    tokens: int
    sequences: int
    seq_len: int
    time_samples: int
    seed: int
    nats_per_token: float
    nats_per_token_se: float | None
    bits_per_token: float
    bits_per_token_se: float | None
    perplexity_bound: float
    perplexity_bound_se: float | None
    unigram_entropy_nats: float
    mean_sequence_unigram_entropy_nats: float
    kind: str = "diffusion"
    prior_nats_per_token: float = 0.0
    order: str | None = None
    orders: int | None = None
    order_nats_per_token: float | None = None
    order_nats_per_token_se: float | None = None
    order_bits_per_token: float | None = None
    order_bits_per_token_se: float | None = None
    score_total: float | None = None
    standard_error: str = (
        "one Monte-Carlo standard error: n_i = mean over the K stratified draws of sequence i; "
        "SE of R = sum n_i / sum L_i by the delta method over sequences; bits SE = SE / ln 2; "
        "perplexity SE = exp(R) SE (delta method)"
    )


def sequence_nats(trained: TrainedModel, blocks: Tensor, time_samples: int, seed: int, batch_size: int) -> Tensor:
    """(N,) per-sequence nats: AR, exact -log p(x); diffusion, the negative ELBO estimate (mean over K
    stratified draws, the module's validation estimator) plus the prior term."""
    module = trained.module
    rows = []
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch_size):
            x0 = blocks[start : start + batch_size].to(module.device)
            if trained.kind == "autoregressive":
                rows.append(module.sequence_nats(x0).cpu())
                continue
            nats = module.negative_elbo_draws(x0, time_samples, seed).double().mean(dim=1) + module.prior_nats(x0)
            rows.append(nats.cpu())
    return torch.cat(rows)


def prior_nats(trained: TrainedModel, blocks: Tensor) -> float:
    """The prior term summed over `blocks` (0 for an autoregressive model)."""
    if trained.kind == "autoregressive":
        return 0.0
    return float(trained.module.prior_nats(blocks.to(trained.module.device)).sum())


def order_denoiser(trained: TrainedModel, score_total: float) -> losses.any_order.Denoiser:
    """The clean-token denoiser of a diffusion checkpoint on the absorbing chain (one-line errors otherwise)."""
    trained.require_kind("diffusion", "--order")
    module = trained.module
    if not module.process.rate_matrix.score_factorises:
        raise ValueError(
            f"--order needs the absorbing chain (ctmc.Absorbing), the checkpoint's chain is "
            f"{type(module.process.rate_matrix).__name__}; evaluate without --order"
        )
    network = module.ema
    if module.loss.output_kind == "log_probs":  # a RADD denoiser: time-independent log-probabilities
        def denoiser(x: Tensor) -> Tensor:
            return network(x, None)
        return denoiser
    if module.loss.output_kind == "log_score":
        return losses.denoiser_from_score_network(network, score_total)
    raise ValueError(f"--order needs a RADD denoiser or a concrete-score network, got {module.loss.output_kind}")


def fixed_order_nats(
    trained: TrainedModel, blocks: Tensor, order: str, orders: int, seed: int, batch_size: int, score_total: float
) -> Tensor:
    """(K, N) -log p^sigma(x_i) for K orders (left to right: K = 1), from losses.any_order_log_likelihood."""
    denoiser = order_denoiser(trained, score_total)
    device = trained.module.device
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(1 if order == "left-to-right" else orders):
        nats = []
        for start in range(0, blocks.shape[0], batch_size):
            x0 = blocks[start : start + batch_size].to(device)
            permutation = None
            if order == "random":
                permutation = torch.rand(x0.shape, generator=generator).argsort(-1).to(device)
            nats.append(-losses.any_order_log_likelihood(denoiser, x0, permutation,
                                                         vocab_size=trained.module.vocab_size).cpu())
        rows.append(torch.cat(nats))
    return torch.stack(rows)


def evaluate(
    trained: TrainedModel, path: str, time_samples: int, seq_len: int, seed: int, batch_size: int, checkpoint: str,
    order: str | None = None, orders: int = 1, score_total: float = 1.0,
) -> Evaluation:
    """The negative-ELBO bound (AR: the exact NLL) of the text at `path` under `trained`'s EMA weights, and
    with `order` the fixed-order likelihood beside it (see the module docstring)."""
    tokens = text_tokens(path, trained)
    full = tokens.numel() // seq_len
    groups = [(tokens[: full * seq_len].view(full, seq_len), seq_len)] if full else []
    if tokens.numel() % seq_len:
        rest = tokens[full * seq_len :]
        groups.append((rest[None], rest.numel()))
    nats = torch.cat([sequence_nats(trained, blocks, time_samples, seed, batch_size) for blocks, _ in groups])
    lengths = torch.cat([torch.full((blocks.shape[0],), float(length)) for blocks, length in groups])
    estimate = ratio_estimate(nats, lengths)
    se = estimate.standard_error
    ln2 = math.log(2.0)
    total_tokens = float(lengths.sum())
    fixed: dict[str, float | int | str | None] = {}
    if order is not None:
        per_order = torch.cat([fixed_order_nats(trained, blocks, order, orders, seed, batch_size, score_total)
                               for blocks, _ in groups], dim=1).sum(1) / total_tokens  # (K,) nats/token
        order_se = float(per_order.std(correction=1)) / math.sqrt(per_order.numel()) if per_order.numel() > 1 else None
        fixed = {
            "order": order, "orders": per_order.numel(), "order_nats_per_token": float(per_order.mean()),
            "order_nats_per_token_se": order_se, "order_bits_per_token": float(per_order.mean()) / ln2,
            "order_bits_per_token_se": None if order_se is None else order_se / ln2,
            "score_total": score_total if trained.module.loss.output_kind == "log_score" else None,
        }
    return Evaluation(
        checkpoint=checkpoint,
        text=path,
        tokens=tokens.numel(),
        sequences=nats.numel(),
        seq_len=seq_len,
        time_samples=time_samples,
        seed=seed,
        nats_per_token=estimate.value,
        nats_per_token_se=se,
        bits_per_token=estimate.value / ln2,
        bits_per_token_se=None if se is None else se / ln2,
        perplexity_bound=math.exp(estimate.value),
        perplexity_bound_se=None if se is None else math.exp(estimate.value) * se,
        unigram_entropy_nats=corpus_entropy(tokens),
        mean_sequence_unigram_entropy_nats=sum(samplers.unigram_entropy(blocks) * blocks.shape[0]
                                               for blocks, _ in groups) / nats.numel(),
        kind=trained.kind,
        prior_nats_per_token=sum(prior_nats(trained, blocks) for blocks, _ in groups) / total_tokens,
        **fixed,
    )


def format_evaluation(result: Evaluation) -> str:
    """A human-readable report of `result`."""

    def pm(value: float, se: float | None, digits: int) -> str:
        if se is None:
            return f"{value:.{digits}f} (SE needs >= 2 sequences)"
        return f"{value:.{digits}f} +- {se:.{digits}f}"

    lines = [
        f"checkpoint: {result.checkpoint} ({result.kind} model)",
        f"text: {result.text}: {result.tokens} tokens in {result.sequences} sequence(s) of <= {result.seq_len}",
        f"draws per sequence: {result.time_samples} (stratified), seed {result.seed}",
        f"{'exact NLL:' if result.kind == 'autoregressive' else 'negative ELBO:':<18}"
        f"{pm(result.nats_per_token, result.nats_per_token_se, 4)} nats/token",
        f"                  {pm(result.bits_per_token, result.bits_per_token_se, 4)} bits/token (nats / ln 2)",
        f"perplexity bound: {pm(result.perplexity_bound, result.perplexity_bound_se, 3)} (exp of nats/token)",
        f"+- is {result.standard_error}",
        f"unigram entropy of the text: {result.unigram_entropy_nats:.4f} nats/token "
        f"({result.unigram_entropy_nats / math.log(2.0):.4f} bits); mean per sequence "
        f"{result.mean_sequence_unigram_entropy_nats:.4f} nats",
    ]
    if result.kind == "diffusion":
        lines.insert(5, f"  of which the t = 1 prior term: {result.prior_nats_per_token:.6f} nats/token")
    if result.order is not None:
        where = "" if result.score_total is None else f", score network at sigma-bar = {result.score_total:g}"
        se = "" if result.order_nats_per_token_se is None else f" +- {result.order_nats_per_token_se:.4f}"
        lines.append(
            f"fixed-order likelihood ({result.order}, {result.orders} order(s){where}): "
            f"{result.order_nats_per_token:.4f}{se} nats/token ({result.order_bits_per_token:.4f} bits; +- is the "
            "SE of the mean over orders)"
        )
    return "\n".join(lines) + "\n"


ORDERS = ("left-to-right", "random")


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="lightning evaluate",
        description="Negative-ELBO perplexity bound (AR: exact NLL) of a checkpoint on a text file, the fixed-order "
        "likelihood beside it, or the generative perplexity of samples under an AR judge.",
    )
    parser.add_argument("--ckpt_path", help="checkpoint written by `lightning fit` (judge mode: the sample source)")
    parser.add_argument("--text", "--text_path", dest="text", help="text file (or directory of .txt)")
    parser.add_argument("--time_samples", type=int, default=8, help="K stratified draws (counts or times) per sequence")
    parser.add_argument("--seq_len", type=int, help="tokens per sequence (default: the training seq_len)")
    parser.add_argument("--batch_size", type=int, default=8, help="sequences per network call (times K rows)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the time and noise draws, orders and samples")
    parser.add_argument("--order", choices=ORDERS, help="also report the exact fixed-order likelihood (absorbing)")
    parser.add_argument("--orders", type=int, default=1, help="random orders K for --order random")
    parser.add_argument("--score_total", type=float, default=1.0,
                        help="sigma-bar at which a concrete-score network is read as a denoiser for --order")
    parser.add_argument("--judge", help="AR checkpoint that scores samples (generative perplexity)")
    parser.add_argument("--samples", help="samples to judge: `lightning sample` output or one sample per line")
    parser.add_argument("--num_samples", type=int, default=8, help="judge mode without --samples: samples to draw")
    parser.add_argument("--sampler", default="euler", help="judge mode: the sampler of a diffusion --ckpt_path")
    parser.add_argument("--steps", type=int, help="judge mode: sampler steps")
    parser.add_argument("--length", type=int, help="judge mode: tokens per sample (default: the training seq_len)")
    parser.add_argument("--json", action="store_true", help="write JSON instead of text")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--config", help="YAML whose model/data sections replace those stored in the checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return parser


def run(arguments: argparse.Namespace) -> Evaluation | JudgeReport:
    """The evaluate command on parsed arguments; writes the report and returns it."""
    for name in ("time_samples", "batch_size", "orders", "num_samples"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(arguments, name)}")
    if arguments.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {arguments.seed}")
    if arguments.orders > 1 and arguments.order != "random":
        raise ValueError(f"--orders {arguments.orders} needs --order random (left to right is one order)")
    if not (math.isfinite(arguments.score_total) and arguments.score_total > 0):
        raise ValueError(f"--score_total must be a finite number > 0, got {arguments.score_total}")
    check_output(arguments.output)
    if arguments.judge is not None:
        if arguments.text is not None or arguments.order is not None:
            raise ValueError("--judge scores samples; give --samples FILE or --ckpt_path, not --text or --order")
        report = judge_samples(arguments, check_device(arguments.device))
        text = json.dumps(asdict(report), indent=2) + "\n" if arguments.json else format_judge(report)
        write_output(text, arguments.output)
        return report
    if arguments.samples is not None:
        raise ValueError("--samples needs --judge ar.ckpt (the AR checkpoint that scores them)")
    for name in ("ckpt_path", "text"):
        if getattr(arguments, name) is None:
            raise ValueError(f"the following arguments are required: --{name} (or --judge with --samples)")
    TextCorpus(arguments.text, argument="text")  # a missing file fails before the checkpoint is read
    trained = load_trained(arguments.ckpt_path, arguments.config, check_device(arguments.device))
    seq_len = trained.seq_len if arguments.seq_len is None else arguments.seq_len
    trained.check_length(seq_len, "--seq_len")
    result = evaluate(
        trained, arguments.text, arguments.time_samples, seq_len, arguments.seed, arguments.batch_size,
        arguments.ckpt_path, arguments.order, arguments.orders, arguments.score_total,
    )
    text = json.dumps(asdict(result), indent=2) + "\n" if arguments.json else format_evaluation(result)
    write_output(text, arguments.output)
    return result


def main(argv: Sequence[str]) -> Evaluation | JudgeReport:
    """Entry point of `lightning evaluate ...` (argv without the subcommand)."""
    return build_parser().run(argv, run)
